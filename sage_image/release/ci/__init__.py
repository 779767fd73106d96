"""Pure generation of CI from the release plan: a GitHub Actions workflow (github.py) and
Kubernetes Jobs (k8s_jobs.py), with what both need in common.py.

Both run exactly the jobs of `plan_release` (build, test, publish) with exactly its
dependencies - each generator's `*_graph()` reads the dependencies back out of what was
generated, and the commands refuse to write a file whose graph differs from
`ReleasePlan.graph()`.

How a child build gets its parent's layer (the layered-build contract, docs/release.md): the
build arguments are `run.build_args`, the same as a local `sage-image release`: a child starts
`--from-layer C/layers/<parent layer_key>.tar.gz`, a parent saves `--save-layer` there (written
under a temporary name and renamed, so it appears whole), a parent nobody asked for is
`--layer-only`.
- GitHub: each layer travels in an actions/cache entry keyed by its layer key, so a rerun with
  an unchanged base restores it instead of building it; images travel as run artifacts.
- Kubernetes: one shared volume is the cache root; a build pod's init container waits until the
  parent's layer file exists (content-addressed, so a warm cache starts it at once) and fails
  as soon as the parent's failure marker appears. No controller or operator is needed.

Nothing here reads the environment, the clock or a secret: secrets are referenced by name only.
"""
