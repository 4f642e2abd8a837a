"""natt scenario helpers live in mobility.lab.natt (shared with the demo and the benchmark)."""

from mobility.lab.natt import NattHandle, natt_config, restart_natt, sa_pair, start_natt, tshark_esp_records

__all__ = ["NattHandle", "natt_config", "restart_natt", "sa_pair", "start_natt", "tshark_esp_records"]
