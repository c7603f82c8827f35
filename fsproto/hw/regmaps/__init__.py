"""Register maps declared once per spec: PCI configuration header, NVMe controller, AHCI HBA/port."""

from fsproto.hw.regmaps.ahci import AHCI_HBA, AHCI_PORT, ahci_port
from fsproto.hw.regmaps.nvme import NVME, nvme_doorbell_offset, nvme_with_doorbells
from fsproto.hw.regmaps.pci import PCI_CONFIG

__all__ = ["AHCI_HBA", "AHCI_PORT", "NVME", "PCI_CONFIG", "ahci_port", "nvme_doorbell_offset", "nvme_with_doorbells"]
