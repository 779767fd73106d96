# STAND-IN plugin template (upstream unreachable at build time).
from waggle.plugin import Plugin

with Plugin() as plugin:
    plugin.publish("env.temperature", 21.5)
