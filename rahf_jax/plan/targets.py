"""The devices `rahf-jax plan` compiles for: TPU topologies (compile-only), fake CPU devices, or
the devices this process has.

  v5e:8x8, v5p:2x4x4, v4:2x4x4, v6e:16x16   a TPU slice, by chip type and chip grid as libtpu
                                           names it; its devices are compile-only (no TPU here)
  h100:N                                   N H100 GPUs (80 GB), compile-only: XLA:GPU through
                                           the CUDA plugin, from a target description, no GPU
  cpu:N                                    N fake CPU devices (XLA:CPU's partitioner and buffer
                                           plan, nothing run)
  local                                    this process's own devices (a TPU or GPU runtime)

Compile-only TPU devices come from `jax.experimental.topologies.get_topology_desc`, which loads
libtpu (installed by the `tpu` extra, `pip install -e .[tpu]`; `dev` includes it) without a TPU.
Cloud TPU names count TensorCores where a chip has two (v4-64 and v5p-64 are 32 chips: v4:2x4x4
and v5p:2x4x4) and chips where it has one (v5e-64 and v6e-64: 8x8).

Compile-only GPU devices come from the same function with platform "cuda": the CUDA PJRT plugin
(`jax-cuda12-plugin` and `jax-cuda12-pjrt` of this jax's version; the `gpu` extra installs them
with the CUDA libraries, which a compile without a GPU does not need) builds them from the
device description below instead of asking a driver.

Per-chip figures (Cloud TPU and NVIDIA documentation): HBM, peak bf16 matmul rate, HBM
bandwidth. A v4 topology compiles one program per TensorCore (2 devices per chip, each with half
the chip).
"""

import dataclasses
import glob
import os

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip's capacity and peak rates."""

  name: str
  hbm_bytes: int
  peak_flops: float | None = None  # bf16 FLOP/s
  hbm_bytes_per_s: float | None = None


# jax's device_kind -> chip.
CHIPS = {
  "TPU v4": Chip("TPU v4", 32 * GIB, 275e12, 1228e9),
  "TPU v5 lite": Chip("TPU v5e", 16 * GIB, 197e12, 819e9),
  "TPU v5": Chip("TPU v5p", 95 * GIB, 459e12, 2765e9),
  "TPU v6 lite": Chip("TPU v6e", 32 * GIB, 918e12, 1640e9),
}
TPU_PREFIXES = ("v4", "v5e", "v5p", "v6e")
# GPU kind -> (chip, XLA's GpuTargetConfig of it in text form). H100 SXM 80 GB: 132 SMs, compute
# capability 9.0, 50 MB L2, 3.35 TB/s, 989 TFLOP/s dense bf16.
_H100_TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: 3352320000000 l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: 84929347584 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 3 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""
GPU_TARGETS = {
  "h100": (Chip("NVIDIA H100", 84929347584, 989e12, 3352e9), _H100_TARGET_CONFIG),
}
# cpu:N compiles without LLVM's optimisations: the CPU code is not what a plan is about.
CPU_COMPILE_OPTIONS = {
  "xla_backend_optimization_level": 0,
  "xla_llvm_disable_expensive_passes": True,
}


@dataclasses.dataclass(frozen=True)
class Target:
  """The devices of a plan and what each one holds.

  devices_per_chip: programs per chip (2 on a v4 topology: one per TensorCore).
  chip: None where the capacity is unknown (fake CPU devices).
  """

  name: str
  devices: tuple
  chip: Chip | None
  devices_per_chip: int = 1

  @property
  def num_chips(self) -> int:
    return len(self.devices) // self.devices_per_chip

  @property
  def device_hbm_bytes(self) -> int | None:
    return None if self.chip is None else self.chip.hbm_bytes // self.devices_per_chip

  @property
  def device_peak_flops(self) -> float | None:
    peak = self.chip and self.chip.peak_flops
    return peak / self.devices_per_chip if peak else None

  @property
  def device_hbm_bytes_per_s(self) -> float | None:
    rate = self.chip and self.chip.hbm_bytes_per_s
    return rate / self.devices_per_chip if rate else None


def prepare_environment(topology: str) -> None:
  """Sets what must be set before jax starts its backends, for `topology`.

  TPU topologies: the CPU backend for everything that runs (the compile-only TPU client needs
  no TPU backend), no cloud metadata look-ups, a placeholder worker name (libtpu otherwise logs
  a parse error of its own warning). cpu:N: N host devices, and no LLVM optimisation (the CPU
  code never runs; the partitioned HLO, its FLOPs and buffer plan are the same). Call it before
  anything asks jax for its devices.
  """
  import jax  # noqa: PLC0415

  kind, _, arg = topology.partition(":")
  if kind in GPU_TARGETS:
    # Without a GPU, XLA:GPU cannot autotune Triton's GEMM tiles and refuses some dots ("Couldn't
    # find output tile sizes"); cuBLAS GEMMs, its other choice, need no tuning to compile.
    os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_enable_triton_gemm=false".strip()
    )
  if kind in TPU_PREFIXES or kind in GPU_TARGETS:
    jax.config.update("jax_platforms", "cpu")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  elif kind == "cpu":
    count = _positive_int(arg, topology)
    jax.config.update("jax_platforms", "cpu")
    fast = " ".join(f"--{k}={str(v).lower()}" for k, v in CPU_COMPILE_OPTIONS.items())
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {fast}".strip()
    jax.config.update("jax_num_cpu_devices", count)


def _positive_int(text: str, topology: str) -> int:
  if not text.isdigit() or int(text) < 1:
    raise ValueError(f"--topology {topology!r}: write cpu:N with N a device count, e.g. cpu:8.")
  return int(text)


def get_target(topology: str) -> Target:
  """The devices named by `topology` (see the module docstring); call prepare_environment first."""
  import jax  # noqa: PLC0415

  kind, _, arg = topology.partition(":")
  if topology == "local":
    devices = tuple(jax.devices())
    chip = CHIPS.get(devices[0].device_kind) or _chip_from_memory_stats(devices[0])
    return Target(topology, devices, chip, _devices_per_chip(devices))
  if kind == "cpu":
    count = _positive_int(arg, topology)
    devices = tuple(jax.devices("cpu"))
    if len(devices) < count:
      raise ValueError(
        f"--topology {topology}: this process has {len(devices)} CPU devices; run "
        "`rahf-jax plan` in a fresh process (the device count is set before jax starts)."
      )
    return Target(topology, devices[:count], None)
  from jax.experimental import topologies  # noqa: PLC0415

  if kind in GPU_TARGETS:
    count = _positive_int(arg, topology)
    chip, target_config = GPU_TARGETS[kind]
    try:
      desc = topologies.get_topology_desc(
        platform="cuda", topology_name="", topology=f"1x1x{count}", target_config=target_config
      )
    except Exception as e:  # noqa: BLE001 - the CUDA plugin missing or refusing
      raise ValueError(_gpu_error(topology, e)) from e
    return Target(topology, tuple(desc.devices), chip)
  if kind not in TPU_PREFIXES or not arg:
    raise ValueError(
      f"--topology {topology!r} unknown; use a TPU slice such as v5e:8x8, v5p:2x4x4, v4:2x4x4, "
      "v6e:8x8, or h100:N, cpu:N, or local."
    )

  try:
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
  except Exception as e:  # noqa: BLE001 - libtpu missing, a busy lockfile, an unknown grid
    raise ValueError(_tpu_error(topology, e)) from e
  devices = tuple(desc.devices)
  return Target(topology, devices, CHIPS.get(devices[0].device_kind), _devices_per_chip(devices))


def _chip_from_memory_stats(device) -> Chip | None:
  """A chip of unlisted kind (a GPU) with the memory its runtime reports; rates unknown."""
  try:
    limit = (device.memory_stats() or {}).get("bytes_limit")
  except Exception:  # noqa: BLE001 - CPU devices and some runtimes have no memory stats
    limit = None
  return Chip(device.device_kind, int(limit)) if limit else None


def _tpu_error(topology: str, e: Exception) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  if "lockfile" in text:
    return (
      f"--topology {topology}: another process holds libtpu (its lockfile); wait for it, or set "
      "ALLOW_MULTIPLE_LIBTPU_LOAD=1 to load it in both."
    )
  if "tpu" in text.lower() and ("not found" in text.lower() or "unknown backend" in text.lower()):
    return f"--topology {topology}: libtpu is not installed; `pip install -e .[tpu]` brings it."
  return f"--topology {topology}: libtpu could not make this topology ({text})."


def _gpu_error(topology: str, e: Exception) -> str:
  import jax  # noqa: PLC0415

  text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  if "unknown backend" in text.lower() or "cuda" in text.lower() and "not" in text.lower():
    v = jax.__version__
    return (
      f"--topology {topology}: the CUDA plugin is not installed; `pip install "
      f"jax-cuda12-plugin=={v} jax-cuda12-pjrt=={v}` (or the gpu extra) brings it."
    )
  return f"--topology {topology}: the CUDA plugin could not make this topology ({text})."


def _devices_per_chip(devices) -> int:
  """How many devices share a chip (their `coords`); 1 where devices have no coordinates."""
  coords = [tuple(getattr(d, "coords", ()) or ()) for d in devices]
  if not all(coords):
    return 1
  return max(1, len(devices) // len(set(coords)))


def tpu_hardware_present() -> bool:
  """Whether this machine has TPU chips attached (PCI accel or VFIO device files)."""
  return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))
