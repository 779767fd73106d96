#!/bin/sh
# STAND-IN for beehive-server's do.sh (upstream unreachable at build time): the same
# commands and answers, but deploy/setup/cleanup do nothing but say so.
if [ -z "$BEEHIVE_ROOT" ]; then
  echo "Environment variable BEEHIVE_ROOT is required."
  exit 1
fi
case $1 in
  deploy|setup|cleanup|test)
    echo "do.sh $1: not available in this stand-in (BEEHIVE_ROOT=$BEEHIVE_ROOT)" >&2
    exit 1
    ;;
  *)
    echo "Usage: do.sh (deploy|setup|cleanup|test)  [stand-in]"
    exit 1
    ;;
esac
