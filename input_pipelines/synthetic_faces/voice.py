"""A synthetic voice for each identity: a source-filter model, lip-synchronised with the sequences.

Source: a band-limited glottal pulse train written as its harmonic series, ``sum_k A_k sin(k phi(t))``
with ``phi(t) = 2 pi int f0``, ``A_k ~ k^-1.5`` (the spectral tilt of a smooth glottal pulse).
The fundamental ``f0(t)`` is the identity's ``voice_pitch`` with vibrato (5-6 Hz, ~1 %), smooth jitter
and a little intonation (accents on loud syllables).

Filter: three formant resonators (second-order resonance magnitude
``F^2 / sqrt((F^2 - f^2)^2 + (B f)^2)``) evaluated at every harmonic. Formant frequencies follow the
vowel of the current syllable (a, e, i, o, u; gliding in over the first part of each syllable) and
are multiplied by the identity's ``formant_scale`` (bigger heads: longer vocal tract, lower formants).

Envelope: the syllable schedule of :mod:`.motion` (``gain * sin^2``), the same one that drives the
mouth in :func:`render_sequence`, plus a little breath noise. The result is peak-normalised to 0.9.
"""

from __future__ import annotations

import numpy as np

from .identity import Identity
from .motion import _stream, syllable_envelope, syllables

# (F1, F2, F3) in Hz for a, e, i, o, u (adult average), and bandwidths.
VOWEL_FORMANTS = np.array(
    [
        [730.0, 1090.0, 2440.0],
        [530.0, 1840.0, 2480.0],
        [300.0, 2250.0, 3000.0],
        [570.0, 840.0, 2410.0],
        [320.0, 870.0, 2240.0],
    ]
)
FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 160.0])
_TAG_VOICE = 505


def synthesize_voice(
    identity: Identity,
    duration_s: float,
    sample_rate: int = 16000,
    seed: int = 0,
    *,
    start_time: float = 0.0,
) -> np.ndarray:
    """Speech-like waveform of ``identity``: float32 (round(duration_s * sample_rate),) in [-1, 1].

    Deterministic per ``(identity, seed)``; its syllables coincide with the mouth openings of
    ``render_sequence(identity, ..., seed=seed, start_time=start_time)``.
    """
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if int(sample_rate) < 4000:
        raise ValueError(f"sample_rate must be at least 4000 Hz, got {sample_rate}")
    sr = int(sample_rate)
    n = int(round(duration_s * sr))
    t = start_time + np.arange(n) / sr
    rng = _stream(seed, identity, _TAG_VOICE)
    syl = syllables(identity, seed, float(t[0]), float(t[-1]))
    env, idx, phase = syllable_envelope(syl, t)

    # Fundamental frequency track.
    f_mean = float(identity.voice_pitch)
    vib_rate, vib_phase = 5.0 + 1.0 * rng.random(), 2 * np.pi * rng.random()
    jit_f = 2.0 + 5.0 * rng.random(3)
    jit_p = 2 * np.pi * rng.random(3)
    rel = 0.012 * np.sin(2 * np.pi * vib_rate * t + vib_phase)
    rel += 0.004 * np.sin(2 * np.pi * jit_f[:, None] * t[None, :] + jit_p[:, None]).sum(0)
    gain = np.where(idx >= 0, syl.gain[np.maximum(idx, 0)], 0.0) if syl.onset.size else np.zeros(n)
    rel += 0.04 * (gain - 0.75) * (idx >= 0)  # loud syllables slightly higher
    f0 = f_mean * (1.0 + rel)
    phi = 2 * np.pi * np.cumsum(f0) / sr

    # Formant tracks: the current syllable's vowel, gliding from the previous one.
    if syl.onset.size:
        cur = VOWEL_FORMANTS[syl.vowel[np.maximum(idx, 0)]]
        prev = VOWEL_FORMANTS[syl.vowel[np.maximum(idx - 1, 0)]]
        w = np.clip(phase / 0.35, 0.0, 1.0)[:, None]
        formants = (prev + (cur - prev) * w * w * (3 - 2 * w)) * identity.formant_scale
    else:
        formants = np.broadcast_to(VOWEL_FORMANTS[0] * identity.formant_scale, (n, 3))

    # Harmonics below 0.45 * sr (no aliasing), amplitude = source tilt x formant filter. The
    # amplitudes change slowly: evaluate them every 2 ms and interpolate linearly.
    k_max = max(1, min(48, int(0.45 * sr / (f_mean * 1.1))))
    k = np.arange(1, k_max + 1)[None, :]
    step = max(1, sr // 500)
    ctrl = np.minimum(np.arange(0, n + step, step), n - 1)
    fk = f0[ctrl, None] * k  # (nc, K)
    amp_c = k ** -1.5 * (fk < 0.45 * sr)
    for j in range(3):
        fj = formants[ctrl, j : j + 1]
        bj = FORMANT_BANDWIDTHS[j]
        amp_c = amp_c * (fj * fj) / np.sqrt((fj * fj - fk * fk) ** 2 + (bj * fk) ** 2)
    out = np.empty(n)
    chunk = 8192
    for s0 in range(0, n, chunk):
        s1 = min(n, s0 + chunk)
        pos = np.arange(s0, s1) / step
        i0 = pos.astype(np.int64)
        w = (pos - i0)[:, None]
        amp = amp_c[i0] * (1 - w) + amp_c[i0 + 1] * w
        out[s0:s1] = (amp * np.sin(phi[s0:s1, None] * k)).sum(1)
    voiced = out * env
    breath = np.diff(rng.standard_normal(n + 1)) * 0.02 * np.sqrt(env)
    signal = voiced / (np.abs(voiced).max() + 1e-12) + breath
    peak = float(np.abs(signal).max())
    if peak > 0:
        signal *= 0.9 / peak
    return signal.astype(np.float32)


def estimate_speaking_rate(identity: Identity, seed: int, duration_s: float) -> float:
    """Syllables per second in ``[0, duration_s]`` (for documentation and sanity checks)."""
    syl = syllables(identity, seed, 0.0, duration_s)
    return float(((syl.onset >= 0) & (syl.onset < duration_s)).sum() / max(duration_s, 1e-9))


__all__ = ["synthesize_voice", "VOWEL_FORMANTS", "FORMANT_BANDWIDTHS", "estimate_speaking_rate"]
