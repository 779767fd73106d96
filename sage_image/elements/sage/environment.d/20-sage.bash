# cc uses Docker through group membership, never a world-writable socket.
case ",${DIB_CC_GROUPS:-}," in
    *,docker,*) ;;
    *) export DIB_CC_GROUPS="${DIB_CC_GROUPS:+$DIB_CC_GROUPS,}docker" ;;
esac
export DIB_SAGE_INSECURE_REGISTRIES=${DIB_SAGE_INSECURE_REGISTRIES:-127.0.0.1:5001,127.0.0.1:5002}
export DIB_SAGE_BEEHIVE_ROOT=${DIB_SAGE_BEEHIVE_ROOT:-/var/lib/beehive}
# sage-node's offline plugin base (install.d/64-sage-node-plugin-base): a root file system of
# the image's own release with Python and these packages from the Sage tools' lock (pywaggle
# and what it needs), kept as a tarball that `sage-node build` imports into Docker.
export DIB_SAGE_PLUGIN_BASE_PACKAGES=${DIB_SAGE_PLUGIN_BASE_PACKAGES:-"pywaggle pika pywagglemsg"}
export DIB_SAGE_PLUGIN_BASE_ARCHIVE=${DIB_SAGE_PLUGIN_BASE_ARCHIVE:-/opt/sage/node/plugin-base.tar}
