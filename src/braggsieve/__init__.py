"""braggsieve: separate Bragg peaks from the smooth background of X-ray diffraction frames.

Layers (data flows down, nothing reaches up; see docs/architecture.md):
``cli`` > ``pipeline`` > ``simulate`` > ``io`` > ``engine`` > ``mask`` > ``geometry`` > base modules
(``errors``, ``params``).
"""
__version__ = "0.1.0"
