# STAND-IN example plugin: publishes one value with pywaggle when it is installed.
from waggle.plugin import Plugin

with Plugin() as plugin:
    plugin.publish("env.stand-in", 1)
