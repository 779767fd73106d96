"""Real OpenStack Glance (and Keystone) servers on loopback ports: demo sites and test fixtures.

`sage-image localcloud up --dir D` starts them and writes D/clouds.yaml; `down` stops them.
Nothing here is a mock: each site is a real glance-api under gunicorn with its own database and
file store, so publishing to it exercises the same API a Chameleon site serves.
"""
