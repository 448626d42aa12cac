"""Reading and writing medical images, sharded array stores and public dataset layouts.

Import what you need from the submodules (``semantic_genesis.io.volumes``,
``semantic_genesis.io.images2d``, ``semantic_genesis.io.shards``, ``semantic_genesis.io.datasets``).
"""
