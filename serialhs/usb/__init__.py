"""USB: discovery of USB-serial adapters and modems, and the virtual USB bus.

    from serialhs.usb import find_at_interface, list_usb_devices
    for device in list_usb_devices():          # never raises for want of libusb
        print(device.summary(), device.problems)

    # hardware-free: SERIALHS_USB=virtual:ft232r,cp2102,cdc_modem
    from serialhs.usb import VirtualBus, create_model

Names are loaded on first use, so that importing the package brings neither
pyusb nor libusb nor the virtual lab's threads until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serialhs._lazy import lazy_getattr

if TYPE_CHECKING:
    from serialhs.usb.discovery import (
        UsbDevice,
        UsbDeviceList,
        UsbEndpointInfo,
        UsbInterfaceInfo,
        find_at_interface,
        find_usb_device,
        list_usb_devices,
    )
    from serialhs.usb.models import (
        CdcAcm,
        Cp2102,
        Ft232h,
        Ft232r,
        available_models,
        cp2102_rate,
        create_model,
        ftdi_divisor,
        ftdi_rate,
        load_device_spec,
    )
    from serialhs.usb.virtual import (
        DeviceSpec,
        VirtualBackend,
        VirtualBus,
        VirtualDevice,
        backend_unavailable_reason,
        env_bus,
        get_backend,
        is_virtual,
        reset_env_bus,
    )

_WHERE = {
    "CdcAcm": "models",
    "Cp2102": "models",
    "DeviceSpec": "virtual",
    "Ft232h": "models",
    "Ft232r": "models",
    "UsbDevice": "discovery",
    "UsbDeviceList": "discovery",
    "UsbEndpointInfo": "discovery",
    "UsbInterfaceInfo": "discovery",
    "VirtualBackend": "virtual",
    "VirtualBus": "virtual",
    "VirtualDevice": "virtual",
    "available_models": "models",
    "backend_unavailable_reason": "virtual",
    "cp2102_rate": "models",
    "create_model": "models",
    "env_bus": "virtual",
    "find_at_interface": "discovery",
    "find_usb_device": "discovery",
    "ftdi_divisor": "models",
    "ftdi_rate": "models",
    "get_backend": "virtual",
    "is_virtual": "virtual",
    "list_usb_devices": "discovery",
    "load_device_spec": "models",
    "reset_env_bus": "virtual",
}

__all__ = [
    "CdcAcm",
    "Cp2102",
    "DeviceSpec",
    "Ft232h",
    "Ft232r",
    "UsbDevice",
    "UsbDeviceList",
    "UsbEndpointInfo",
    "UsbInterfaceInfo",
    "VirtualBackend",
    "VirtualBus",
    "VirtualDevice",
    "available_models",
    "backend_unavailable_reason",
    "cp2102_rate",
    "create_model",
    "env_bus",
    "find_at_interface",
    "find_usb_device",
    "ftdi_divisor",
    "ftdi_rate",
    "get_backend",
    "is_virtual",
    "list_usb_devices",
    "load_device_spec",
    "reset_env_bus",
]


__getattr__ = lazy_getattr("serialhs.usb", _WHERE)
