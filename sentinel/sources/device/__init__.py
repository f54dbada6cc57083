"""Kernel device events (removable media, new block and USB devices) as events."""

from sentinel.sources.device.source import DeviceSource, build_device_source

__all__ = ["DeviceSource", "build_device_source"]
