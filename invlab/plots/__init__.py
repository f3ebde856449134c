"""Pure plotting functions: arrays in, matplotlib figures out (saved when ``save=`` is given).

They know nothing about models or methods. One submodule per topic; all re-exported here.
"""

from .bugs import *  # noqa: F401,F403
from .bugs import __all__ as _bugs
from .core import *  # noqa: F401,F403
from .core import __all__ as _core
from .diagnose import *  # noqa: F401,F403
from .diagnose import __all__ as _diagnose
from .diagrams import *  # noqa: F401,F403
from .diagrams import __all__ as _diagrams
from .edit import *  # noqa: F401,F403
from .edit import __all__ as _edit
from .flowmatch import *  # noqa: F401,F403
from .flowmatch import __all__ as _flowmatch
from .flows import *  # noqa: F401,F403
from .flows import __all__ as _flows
from .guidance import *  # noqa: F401,F403
from .guidance import __all__ as _guidance
from .kalman import *  # noqa: F401,F403
from .kalman import __all__ as _kalman
from .latent import *  # noqa: F401,F403
from .latent import __all__ as _latent
from .reversible import *  # noqa: F401,F403
from .reversible import __all__ as _reversible
from .solvers import *  # noqa: F401,F403
from .solvers import __all__ as _solvers
from .watermark import *  # noqa: F401,F403
from .watermark import __all__ as _watermark
from .zoo import *  # noqa: F401,F403
from .zoo import __all__ as _zoo

__all__ = [*_bugs, *_core, *_diagnose, *_diagrams, *_edit, *_flowmatch, *_flows, *_guidance, *_kalman, *_latent, *_reversible, *_solvers, *_watermark, *_zoo]
