"""Everything ikemgr renders into files: one module per feature, listed by ``outputs.all_outputs``."""
