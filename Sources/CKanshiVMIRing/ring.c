// Header-only target: the ring layout shared by the QEMU plugin and kanshi.
