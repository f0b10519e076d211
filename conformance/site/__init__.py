"""The interop-event site: every run's report at a stable permalink, the latest result per subject x scenario,
history per subject with regressions and diffs, a JSON index for tools (`lemonade site`)."""

from .build import Outcome, Site, build_site, print_outcome

__all__ = ["Outcome", "Site", "build_site", "print_outcome"]
