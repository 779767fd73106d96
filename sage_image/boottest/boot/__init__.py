"""Booting built images in QEMU for `sage-image test`.

kvm: does KVM really boot a guest here?      disk: what is in an image file (read-only)
configdrive: metadata the way Chameleon delivers it      qemu: one throw-away VM
ssh: a throw-away key and commands as ``cc``
"""
