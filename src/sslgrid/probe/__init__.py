"""Linear phone separability: phone labels per 10 ms frame and linear probes on frozen layers.

``phones``: the phone set and the espeak-ng Dutch phonemiser. ``espeak_timing``: the
synthesiser's own phoneme timing (libespeak-ng through ctypes), to check alignments against.
``align``: a small CTC phone recogniser and forced alignment into frame labels. ``probe``:
a linear classifier on one frozen layer, scored by frame accuracy with a bootstrap interval.
"""
