"""Microcontroller profiles: memory, clock and an int8 cycles-per-MAC figure, with sources.

Memory and clock come from the vendors' datasheets. ``cycles_per_mac`` is an *estimate*
for TFLite Micro with the vendor's optimized int8 kernels, built from the instruction set's
peak and an assumed 2x overhead for loads, im2col and requantization; replace it with a
measured figure from the real board when there is one. ``reserved_*`` is room kept for
the stack, heap, RTOS/radio and application code (an assumption, stated here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class McuProfile:
    name: str
    part: str
    core: str
    clock_hz: float
    ram_bytes: int
    flash_bytes: int
    reserved_ram: int
    reserved_flash: int
    cycles_per_mac: float
    mac_basis: str
    source: str


PROFILES: dict[str, McuProfile] = {p.name: p for p in (
    McuProfile(
        "cortex-m4-256k", "Nordic nRF52840", "Arm Cortex-M4F", 64e6, 256 * 1024, 1024 * 1024,
        reserved_ram=48 * 1024, reserved_flash=256 * 1024, cycles_per_mac=1.0,
        mac_basis="SMLAD: two 16x16 MACs in 1 cycle (Cortex-M4 TRM, DSP instruction timing) "
                  "-> 0.5 cycle/MAC peak; CMSIS-NN widens int8 to 16 bit first (Lai, Suda & "
                  "Chandra 2018, arXiv:1801.06601); x2 assumed for loads/im2col/requant",
        source="nRF52840 Product Specification v1.7: 64 MHz, 1 MB flash, 256 KB RAM"),
    McuProfile(
        "cortex-m7-512k", "ST STM32F767ZI", "Arm Cortex-M7", 216e6, 512 * 1024,
        2048 * 1024, reserved_ram=64 * 1024, reserved_flash=256 * 1024, cycles_per_mac=0.6,
        mac_basis="SMLAD as on M4 (0.5 cycle/MAC peak) but the dual-issue pipeline overlaps "
                  "loads with MACs; CMSIS-NN kernels (arXiv:1801.06601); overhead x1.2 "
                  "assumed",
        source="STM32F767xx datasheet DS11532: 216 MHz, 2 MB flash, 512 KB RAM"),
    McuProfile(
        "esp32-s3", "Espressif ESP32-S3 (WROOM-1-N8 module)", "Xtensa LX7 (1 core used)",
        240e6, 512 * 1024, 8 * 1024 * 1024, reserved_ram=128 * 1024,
        reserved_flash=1024 * 1024, cycles_per_mac=0.25,
        mac_basis="PIE 128-bit SIMD: 16 int8 MACs per EE.VMULAS instruction (ESP32-S3 TRM) "
                  "-> 0.0625 cycle/MAC peak; ESP-NN kernels; x4 assumed for memory-bound "
                  "small layers",
        source="ESP32-S3 datasheet: up to 240 MHz, 512 KB SRAM; WROOM-1-N8: 8 MB flash"),
)}

#: Code size of TFLite Micro itself and of one op kernel, bytes: rough estimates (order of
#: magnitude of CMSIS-NN/reference kernel object sizes at -Os), not measured here; a linker
#: map of the real firmware replaces them.
FLASH_RUNTIME = 40 * 1024
FLASH_PER_OP = {"CONV_2D": 12 * 1024, "DEPTHWISE_CONV_2D": 10 * 1024,
                "FULLY_CONNECTED": 6 * 1024, "MAX_POOL_2D": 3 * 1024,
                "AVERAGE_POOL_2D": 3 * 1024, "SOFTMAX": 3 * 1024, "RESHAPE": 1024,
                "ADD": 4 * 1024, "MUL": 4 * 1024, "CONCATENATION": 2 * 1024,
                "QUANTIZE": 2 * 1024, "DEQUANTIZE": 2 * 1024, "MEAN": 3 * 1024,
                "PAD": 2 * 1024, "EXPAND_DIMS": 1024, "SQUEEZE": 1024}
FLASH_OTHER_OP = 4 * 1024


def get_profile(name: str) -> McuProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown MCU profile {name!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[name]
