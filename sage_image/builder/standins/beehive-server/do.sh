#!/bin/sh
# STAND-IN for beehive-server's do.sh (upstream unreachable at build time). It does what the
# pinned upstream do.sh does before any real work - the same first lines, files and exit codes:
# BEEHIVE_ROOT defaults to ./data/, a BEEHIVE_ROOT that is a git repository is refused, a missing
# ./beehive.conf is copied from beehive.conf.example, deploy `source`s it (bash only) - and then
# only says that the real work is not available.
set -e

if [ -z "$BEEHIVE_ROOT" ]; then
  echo "Environment variable BEEHIVE_ROOT is not defined, using ${PWD}/data/"
  export BEEHIVE_ROOT=${PWD}/data/
fi

if [ -e "${BEEHIVE_ROOT}/.git" ]; then
  echo "Your BEEHIVE_ROOT folder (${BEEHIVE_ROOT}) seems to be a git repository. Please rename either BEEHIVE_ROOT or your git repository."
  exit 1
fi

if [ ! -e ./beehive.conf ]; then
  echo "using beehive.conf.example"
  cp beehive.conf.example beehive.conf
fi

case $1 in
  deploy)
    set -o allexport
    source beehive.conf
    set +o allexport
    mkdir -p "$BEEHIVE_ROOT/ssh_keys"
    echo "do.sh deploy: not available in this stand-in (BEEHIVE_ROOT=$BEEHIVE_ROOT)" >&2
    exit 1
    ;;
  setup|cleanup|test)
    echo "do.sh $1: not available in this stand-in (BEEHIVE_ROOT=$BEEHIVE_ROOT)" >&2
    exit 1
    ;;
  *)
    echo "Usage: do.sh (deploy|setup|cleanup|test)"
    exit 1
    ;;
esac
