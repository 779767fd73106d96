"""The app skeleton `sage-node new` writes (our own, current: pywaggle 0.56.3, sage.yaml as
the ECR reads it). Files ending in .tmpl have {name}, {version} and {base_image} filled in."""
