from tests.unit.gateway.conftest import config_dir

__all__ = ["config_dir"]
