"""What a scenario check needs to know about the zoo's models, without building them (and
so without importing torch). ``ecofed_sim.models`` builds them; a test keeps both in step.
"""

from __future__ import annotations

MODEL_NAMES = ("small_cnn", "vgg5", "vgg11", "resnet9")

# Smallest input side each model accepts (its pools must leave at least 1 pixel).
MIN_SIDE = {"small_cnn": 4, "vgg5": 4, "vgg11": 16, "resnet9": 16}

# Units per model: split points run 1..UNITS - 1. Fixed by the architecture, whatever the
# input shape and class count.
UNITS = {"small_cnn": 7, "vgg5": 8, "vgg11": 16, "resnet9": 9}
