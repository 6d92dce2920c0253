"""The built-in connector specs, shipped as package data: `<vendor>.yaml`, and beside some a
hook module `<vendor>_hooks.py` for what the YAML cannot say (see `connectors.vendors.spec`)."""
