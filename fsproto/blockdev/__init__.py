"""Block-device backends and wrappers; :mod:`fsproto.rawdev` is the public face."""
