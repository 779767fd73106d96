#!/bin/bash
# STAND-IN for beehive-server's do.sh; upstream unreachable at build time.
: "${BEEHIVE_ROOT:?BEEHIVE_ROOT must be set}"
case "${1:-}" in
    ""|-h|--help) echo "usage: do.sh deploy|setup|cleanup|test (stand-in; BEEHIVE_ROOT=$BEEHIVE_ROOT)"; exit 0 ;;
esac
echo "do.sh $1: not available in this stand-in" >&2
exit 1
