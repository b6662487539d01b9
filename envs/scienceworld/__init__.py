"""ScienceWorld: 30 task types of elementary-science procedures, scored 0-100 (Wang et al. 2022).

Needs the PyPI ``scienceworld`` package (``pip install -e '.[benchmarks]'``, it ships its jar) and
Java 17 (``apt-get install default-jre-headless``); ``agentsd.envs.make("scienceworld")`` builds
:class:`ScienceWorldEnv`, one JVM per env instance (``close()`` stops it).
"""

from agentsd.envs.scienceworld.env import ScienceWorldEnv, ScienceWorldFailure
from agentsd.envs.scienceworld.tasks import SPLITS, TASKS, deal, variations

__all__ = ["SPLITS", "TASKS", "ScienceWorldEnv", "ScienceWorldFailure", "deal", "variations"]
