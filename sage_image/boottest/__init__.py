"""The test stage: boot a built image in QEMU (boot/) and check it (checks/)."""
