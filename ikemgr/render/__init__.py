"""Everything ikemgr renders into files (the gateway today lives in core/contexts.py + renderer.py)."""
