"""LightningModules: loss, optimisation and logging around the plain-torch networks in `uhrtex`."""
