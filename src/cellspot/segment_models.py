"""Former name of :mod:`cellspot.segment.models`, kept for trained models.

Every MMDetection config and checkpoint written before 2026-12-02 imports this name
(``custom_imports``) to register cellspot's transforms; importing it registers them from their
new home, so those models still load.
"""

from cellspot.segment.models import *  # noqa: F401,F403
