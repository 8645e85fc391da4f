"""Registers the built-in agents."""

from replaybench.registry import AGENTS

AGENTS.register("naive", "agents.naive:NaiveAgent", summary="fine-tune on each experience (lower bound)")
AGENTS.register("joint", "agents.joint:JointAgent", summary="retrain on all data seen so far (upper bound)")
AGENTS.register("er", "agents.er:ExperienceReplay", summary="experience replay, reservoir memory")
AGENTS.register("er-balanced", "agents.er:ExperienceReplay", summary="experience replay, class-balanced memory",
                class_balanced=True)
AGENTS.register("ewc", "agents.ewc:EWCAgent", summary="elastic weight consolidation (Kirkpatrick 2017)")
AGENTS.register("lwf", "agents.lwf:LwFAgent", summary="learning without forgetting (Li & Hoiem 2017)")
AGENTS.register("avalanche:*", "agents.avalanche:AvalancheAgent",
                summary="any Avalanche SupervisedTemplate strategy, e.g. avalanche:Replay")
