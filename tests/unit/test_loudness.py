"""Loudness targets and the true-peak ceiling on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from voicereel.audio.loudness import (
    integrated_lufs,
    line_gain,
    master_envelope,
    true_peak_dbtp,
)

RATE = 24000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from voicereel.audio.io import resample
    from voicereel.engines.piper import PiperEngine
    from voicereel.settings import Settings

    audio, _ = PiperEngine(Settings()).render_base(
        "Every night the keeper climbed the narrow stairs. Ships looked for the steady beam.")
    return resample(audio, 22050, RATE)


def test_true_peak_sees_between_samples() -> None:
    # A sine at a quarter of the rate sampled at +-45 degrees: samples peak at 0.707 of the
    # waveform's real peak, which only oversampling finds.
    n = np.arange(RATE)
    wave = np.sin(2 * np.pi * (RATE / 4) * n / RATE + np.pi / 4)
    assert np.abs(wave).max() == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert true_peak_dbtp(wave) == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize("target", [-23.0, -16.0, -12.0])
def test_master_meets_target_and_ceiling(speech: np.ndarray, target: float) -> None:
    quiet_then_loud = np.concatenate([speech * 0.05, np.zeros(RATE // 2), speech * 3.0])
    envelope = master_envelope(quiet_then_loud, RATE, target, -1.0)
    out = quiet_then_loud * envelope
    assert abs(integrated_lufs(out, RATE) - target) <= 0.5
    assert true_peak_dbtp(out) <= -1.0
    assert envelope.max() <= 10 ** ((target + 30) / 20)  # a gain curve, not hard clipping
    # The limiter changes gain smoothly (a few per cent per sample at most), never in the
    # jumps of hard clipping.
    assert (np.abs(np.diff(envelope)) / envelope[1:]).max() < 0.05


def test_lines_are_levelled_to_each_other(speech: np.ndarray) -> None:
    quiet, loud = speech * 0.02, speech * 0.9
    levelled = [x * line_gain(x, RATE, -16.0) for x in (quiet, loud)]
    a, b = (integrated_lufs(x, RATE) for x in levelled)
    assert abs(a - b) < 0.1 and abs(a + 16.0) < 0.1


def test_silence_is_left_alone() -> None:
    silence = np.zeros(RATE * 2)
    assert line_gain(silence, RATE, -16.0) == 1.0
    assert np.all(master_envelope(silence, RATE, -16.0, -1.0) == 1.0)


def test_on_target_but_too_peaky_is_still_limited(speech: np.ndarray) -> None:
    on_target = speech * line_gain(speech, RATE, -12.0)
    assert true_peak_dbtp(on_target) > -1.0
    out = on_target * master_envelope(on_target, RATE, -12.0, -1.0)
    assert true_peak_dbtp(out) <= -1.0
    assert abs(integrated_lufs(out, RATE) + 12.0) <= 0.5
