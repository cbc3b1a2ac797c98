"""The pure core of glb: model, health, snapshot and steering policies.

Nothing under glb.core performs I/O, reads a clock or draws unseeded randomness: time and the random
generator are passed in. It may import only the standard library, glb.core and glb.errors.
"""
