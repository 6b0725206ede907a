"""A synthetic spherical water-Cherenkov detector: PMT hit patterns from simulated events.

Everything is NumPy, vectorised over events, and seeded. The physics is simple but sane: a
Cherenkov ring around each track, some isotropic scattered light, solid angle, quantum
efficiency, attenuation, Poisson photoelectrons, time of flight with charge-dependent jitter,
dead PMTs and dark noise. Tests hold it to a realistic hits-per-MeV band and a ring angle
near the Cherenkov angle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from diffusion.errors import ConfigError

SPEED_OF_LIGHT_M_PER_NS = 0.299792458
MAX_RINGS = 3
# Conditioning: log total energy, one-hot multiplicity (3), vertex / R (3),
# per ring: direction (3) and energy share (1), padded to MAX_RINGS rings.
COND_DIM = 1 + MAX_RINGS + 3 + MAX_RINGS * 4


@dataclass(frozen=True)
class DetectorConfig:
    """Geometry and optics of the detector. Defaults give ~35% photocathode coverage at 768 PMTs."""

    n_pmt: int = 768
    radius_m: float = 4.0
    pmt_radius_m: float = 0.17
    cherenkov_angle_deg: float = 41.5  # cos = 1 / (n * beta) for n = 1.33, beta ~ 1
    ring_width_deg: float = 5.0  # Gaussian sigma of the ring: multiple scattering of the electron
    scattered_fraction: float = 0.08  # isotropic share of the light (Rayleigh, reflections)
    photons_per_mev: float = 170.0  # in the PMT-sensitive band
    qe_mean: float = 0.21
    qe_spread: float = 0.10  # relative, per PMT
    dead_fraction: float = 0.03
    attenuation_length_m: float = 30.0
    refractive_index: float = 1.33
    jitter_floor_ns: float = 0.33  # transit-time spread of one PMT at high charge
    jitter_charge_ns2: float = 10.0  # jitter = floor + sqrt(this / q): single-pe timing is poor
    dark_rate_hz: float = 5e3
    window_ns: float = 200.0
    window_start_ns: float = -50.0  # the trigger window opens before the event's light arrives
    gain_resolution: float = 0.3  # relative charge spread of a single photoelectron
    seed: int = 7  # which detector: QE spread and dead PMTs are fixed per instance

    def __post_init__(self) -> None:
        if self.n_pmt < 8:
            raise ConfigError(f"`n_pmt` must be at least 8, but got {self.n_pmt}.")
        if not 0 <= self.dead_fraction < 1:
            raise ConfigError(f"`dead_fraction` must be in [0, 1), but got {self.dead_fraction}.")

    @property
    def coverage(self) -> float:
        """Fraction of the sphere covered by photocathode."""
        return self.n_pmt * self.pmt_radius_m**2 / (4 * self.radius_m**2)


@dataclass(frozen=True)
class EventConfig:
    """What kind of events to simulate."""

    multiplicity_probs: tuple[float, ...] = (0.5, 0.3, 0.2)  # P(1, 2, 3 rings)
    # Per ring, uniform. From 2 MeV, so the models are trained on the trigger sample's 2-15 MeV
    # (TRIGGER_EVENTS) and the PMT selection tests the model, not its extrapolation.
    energy_range_mev: tuple[float, float] = (2.0, 80.0)
    min_ring_separation_deg: float = 40.0
    vertex_radius_m: float = 3.2  # fiducial volume
    beam_concentration: float = 2.0  # von Mises-Fisher kappa of directions around +z

    def __post_init__(self) -> None:
        probs = np.asarray(self.multiplicity_probs, dtype=float)
        if len(probs) != MAX_RINGS or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise ConfigError(
                f"`multiplicity_probs` must be {MAX_RINGS} non-negative numbers summing to 1, "
                f"but got {self.multiplicity_probs}."
            )
        low, high = self.energy_range_mev
        if not 0 < low <= high:
            raise ConfigError(f"`energy_range_mev` must satisfy 0 < low <= high, but got {self.energy_range_mev}.")


PHYSICS_EVENTS = EventConfig()
# Low-energy single-ring sample for detection-rate (trigger) studies.
TRIGGER_EVENTS = EventConfig(multiplicity_probs=(1.0, 0.0, 0.0), energy_range_mev=(2.0, 15.0))


@dataclass(frozen=True, eq=False)
class Events:
    """A batch of simulated events and their truth.

    Attributes:
        charge: (N, P) photoelectron charge per PMT, 0 where not hit.
        time: (N, P) hit time in ns, 0 where not hit (see ``hit``).
        energy: (N, 3) energy per ring in MeV, 0 for absent rings.
        vertex: (N, 3) vertex in m.
        direction: (N, 3, 3) unit direction per ring, 0 for absent rings.
        multiplicity: (N,) number of rings, 1-3.
    """

    charge: np.ndarray
    time: np.ndarray
    energy: np.ndarray
    vertex: np.ndarray
    direction: np.ndarray
    multiplicity: np.ndarray

    def __len__(self) -> int:
        return len(self.charge)

    @property
    def hit(self) -> np.ndarray:
        return self.charge > 0

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def subset(self, index: np.ndarray | slice) -> Events:
        return Events(**{name: array[index] for name, array in self.arrays().items()})

    def condition(self, radius_m: float) -> np.ndarray:
        """The fixed-size conditioning vector (N, COND_DIM) built from the truth."""
        total = self.energy.sum(axis=1)
        one_hot = np.eye(MAX_RINGS, dtype=np.float32)[self.multiplicity.astype(int) - 1]
        share = self.energy / total[:, None]
        rings = np.concatenate([self.direction, share[:, :, None]], axis=2).reshape(len(self), -1)
        parts = [np.log(total)[:, None], one_hot, self.vertex / radius_m, rings]
        return np.concatenate(parts, axis=1).astype(np.float32)


def fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit vectors (Fibonacci lattice), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z**2)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _sample_vmf_z(rng: np.random.Generator, n: int, kappa: float) -> np.ndarray:
    """Unit vectors from a von Mises-Fisher distribution around +z (closed form in 3-D)."""
    u = rng.random(n)
    w = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa
    phi = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(np.clip(1.0 - w**2, 0.0, None))
    return np.stack([s * np.cos(phi), s * np.sin(phi), w], axis=1)


class Detector:
    """One detector instance: PMT positions, per-PMT efficiency, dead channels."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, config.n_pmt])
        self.unit = fibonacci_sphere(config.n_pmt)
        self.positions = self.unit * config.radius_m
        qe = config.qe_mean * (1.0 + config.qe_spread * rng.standard_normal(config.n_pmt))
        self.dead = np.zeros(config.n_pmt, dtype=bool)
        n_dead = int(round(config.dead_fraction * config.n_pmt))
        self.dead[rng.choice(config.n_pmt, n_dead, replace=False)] = True
        self.qe = np.where(self.dead, 0.0, np.clip(qe, 0.0, 1.0))

    @cached_property
    def _dark_probability(self) -> float:
        return min(1.0, self.config.dark_rate_hz * self.config.window_ns * 1e-9)

    def sample_truth(self, rng: np.random.Generator, n: int, events: EventConfig) -> Events:
        """Draw event truth (multiplicity, energies, vertex, directions), without detector response."""
        multiplicity = rng.choice(np.arange(1, MAX_RINGS + 1), size=n, p=events.multiplicity_probs)
        present = np.arange(MAX_RINGS)[None, :] < multiplicity[:, None]
        energy = np.where(present, rng.uniform(*events.energy_range_mev, size=(n, MAX_RINGS)), 0.0)
        radius = events.vertex_radius_m * rng.random(n) ** (1.0 / 3.0)
        vertex = radius[:, None] * _sample_vmf_z(rng, n, 1e-6)  # kappa -> 0: isotropic
        direction = np.zeros((n, MAX_RINGS, 3))
        direction[:, 0] = _sample_vmf_z(rng, n, events.beam_concentration)
        min_cos = np.cos(np.radians(events.min_ring_separation_deg))
        for ring in range(1, MAX_RINGS):
            todo = np.flatnonzero(present[:, ring])
            # Rejection sampling: redraw only the events whose new ring lies too close to an earlier one.
            for _ in range(1000):
                if todo.size == 0:
                    break
                candidate = _sample_vmf_z(rng, todo.size, events.beam_concentration)
                cos_prev = np.einsum("nkd,nd->nk", direction[todo, :ring], candidate)
                ok = np.all(cos_prev <= min_cos, axis=1)
                direction[todo[ok], ring] = candidate[ok]
                todo = todo[~ok]
            if todo.size:
                raise RuntimeError(f"could not place ring {ring + 1} apart from the others in 1000 tries")
        return Events(
            charge=np.zeros((n, self.config.n_pmt), np.float32),
            time=np.zeros((n, self.config.n_pmt), np.float32),
            energy=energy.astype(np.float32),
            vertex=vertex.astype(np.float32),
            direction=direction.astype(np.float32),
            multiplicity=multiplicity.astype(np.int8),
        )

    def expected_photoelectrons(self, truth: Events) -> tuple[np.ndarray, np.ndarray]:
        """Mean photoelectrons (N, P) and distance vertex->PMT (N, P) for the given truth."""
        cfg = self.config
        offset = self.positions[None, :, :] - truth.vertex[:, None, :].astype(np.float64)
        distance = np.linalg.norm(offset, axis=2)
        toward = offset / distance[:, :, None]
        cos_incidence = np.clip(np.einsum("npd,pd->np", toward, self.unit), 0.0, 1.0)
        solid_angle = np.pi * cfg.pmt_radius_m**2 * cos_incidence / distance**2
        cos_track = np.einsum("nkd,npd->nkp", truth.direction.astype(np.float64), toward)
        theta = np.arccos(np.clip(cos_track, -1.0, 1.0))
        sigma = np.radians(cfg.ring_width_deg)
        ring_pdf = np.exp(-0.5 * ((theta - np.radians(cfg.cherenkov_angle_deg)) / sigma) ** 2)
        ring_pdf /= np.sqrt(2 * np.pi) * sigma
        # Density per steradian: the Gaussian is in theta, so divide by 2 pi sin(theta).
        per_sr = (1 - cfg.scattered_fraction) * ring_pdf / (2 * np.pi * np.maximum(np.sin(theta), 1e-3))
        per_sr += cfg.scattered_fraction / (4 * np.pi)
        photons = cfg.photons_per_mev * truth.energy.astype(np.float64)
        emitted = np.einsum("nk,nkp->np", photons, per_sr)
        transmission = np.exp(-distance / cfg.attenuation_length_m)
        return emitted * solid_angle * self.qe[None, :] * transmission, distance

    def simulate(self, rng: np.random.Generator, n: int, events: EventConfig = PHYSICS_EVENTS) -> Events:
        """Simulate n events: truth, then the detector's response (charge and time per PMT)."""
        return self.respond(rng, self.sample_truth(rng, n, events))

    def respond(self, rng: np.random.Generator, truth: Events) -> Events:
        """The detector's response (charge and time per PMT) to the given truth.

        Called twice with different generators on the same truth, it gives two independent
        simulated sets of the same events: the ceiling that generated events are scored against.
        """
        cfg = self.config
        mean_pe, distance = self.expected_photoelectrons(truth)
        pe = rng.poisson(mean_pe)
        dark = (rng.random(pe.shape) < self._dark_probability) & (pe == 0) & ~self.dead[None, :]
        pe = pe + dark
        hit = pe > 0
        gain = 1.0 + cfg.gain_resolution * rng.standard_normal(pe.shape) / np.sqrt(np.maximum(pe, 1))
        charge = np.where(hit, pe * np.clip(gain, 0.2, None), 0.0)
        tof = distance * cfg.refractive_index / SPEED_OF_LIGHT_M_PER_NS
        jitter = cfg.jitter_floor_ns + np.sqrt(cfg.jitter_charge_ns2 / np.maximum(charge, 1e-3))
        time = tof + jitter * rng.standard_normal(pe.shape)
        dark_time = rng.uniform(cfg.window_start_ns, cfg.window_start_ns + cfg.window_ns, pe.shape)
        time = np.where(dark, dark_time, time)
        return dataclasses.replace(
            truth,
            charge=charge.astype(np.float32),
            time=np.where(hit, time, 0.0).astype(np.float32),
        )
