"""Kubernetes manifests as files: what `sage-image ci k8s` and `sage-image vw k8s` share.

A leaf package (PyYAML, errors and folders only), so any stage can render manifests with it
without importing another stage.
"""
