# cc uses Docker through group membership, never a world-writable socket.
case ",${DIB_CC_GROUPS:-}," in
    *,docker,*) ;;
    *) export DIB_CC_GROUPS="${DIB_CC_GROUPS:+$DIB_CC_GROUPS,}docker" ;;
esac
export DIB_SAGE_INSECURE_REGISTRIES=${DIB_SAGE_INSECURE_REGISTRIES:-127.0.0.1:5001,127.0.0.1:5002}
export DIB_SAGE_BEEHIVE_ROOT=${DIB_SAGE_BEEHIVE_ROOT:-/var/lib/beehive}
