"""Registers the built-in agents."""

from replaybench.registry import AGENTS

AGENTS.register("naive", "replaybench.agents.naive:NaiveAgent", summary="fine-tune on each experience (lower bound)")
AGENTS.register("joint", "replaybench.agents.joint:JointAgent", summary="retrain on all data seen so far (upper bound)")
AGENTS.register("er", "replaybench.agents.er:ExperienceReplay", summary="experience replay, reservoir memory")
AGENTS.register(
    "er-balanced",
    "replaybench.agents.er:ExperienceReplay",
    summary="experience replay, class-balanced memory",
    class_balanced=True,
)
AGENTS.register("ewc", "replaybench.agents.ewc:EWCAgent", summary="elastic weight consolidation (Kirkpatrick 2017)")
AGENTS.register("lwf", "replaybench.agents.lwf:LwFAgent", summary="learning without forgetting (Li & Hoiem 2017)")
AGENTS.register(
    "avalanche:*",
    "replaybench.agents.avalanche:AvalancheAgent",
    summary="any Avalanche SupervisedTemplate strategy, e.g. avalanche:Replay",
)

# Continual RL (agents/dqn.py, agents/ppo.py): one DQN, variants by config.
AGENTS.register(
    "dqn-finetune",
    "replaybench.agents.dqn:DQN",
    summary="DQN; replay buffer emptied at each task (RL lower bound)",
    buffer="per-task",
)
AGENTS.register(
    "dqn-replay",
    "replaybench.agents.dqn:DQN",
    summary="DQN; 20k reservoir buffer kept across tasks",
    buffer="reservoir",
)
AGENTS.register(
    "dqn-prioritized",
    "replaybench.agents.dqn:DQN",
    summary="DQN; kept buffer sampled by |TD error| (Schaul 2016)",
    buffer="reservoir",
    prioritized=True,
)
AGENTS.register(
    "dqn-reverse",
    "replaybench.agents.dqn:DQN",
    summary="DQN; kept buffer + backward sweep of the last rewarded episode",
    buffer="reservoir",
    reverse_replay=True,
)
AGENTS.register(
    "ppo", "replaybench.agents.ppo:PPO", summary="PPO, on-policy, nothing kept across tasks (RL naive baseline)"
)
AGENTS.register(
    "dqn-wave",
    "replaybench.agents.wave_dqn:WaveDQN",
    summary="recurrent DQN with a traveling-wave working memory (for cartpole-conflict-pomdp)",
)

# Sequence agents (agents/sequence.py) for the variable-binding and flip-flop streams.
AGENTS.register(
    "wave-lbc",
    "replaybench.agents.sequence:WaveLBCAgent",
    summary="traveling-wave memory, linear boundary (Karuvally 2024)",
)
AGENTS.register(
    "wave-sbc",
    "replaybench.agents.sequence:WaveSBCAgent",
    summary="traveling-wave memory, self-attention boundary (Karuvally 2024)",
)
AGENTS.register("elman", "replaybench.agents.sequence:ElmanAgent", summary="Elman RNN, tanh, no bias (EMT's model)")
AGENTS.register("lstm", "replaybench.agents.sequence:LSTMAgent", summary="LSTM sequence baseline")

# Spiking networks with STDP (agents/snn.py, spiking/).
AGENTS.register(
    "snn", "replaybench.agents.snn:SNNClassifier", summary="Diehl & Cook STDP features + label assignment (supervised)"
)
AGENTS.register(
    "snn-features",
    "replaybench.agents.snn:SNNFeatures",
    summary="Diehl & Cook STDP spike-count embedding (unsupervised)",
)
AGENTS.register(
    "lc-snn",
    "replaybench.agents.snn:SNNClassifier",
    summary="LC-SNN STDP features, 2-gram readout (Saunders et al. 2019)",
    architecture="lc-snn",
    readout="ngram",
)

# Biological-style replay (agents/replay/; docs/replay.md): one agent, a learner x a source x a
# schedule, each element of the replay review an option. The named agents are presets of it.
_REPLAY = "replaybench.agents.replay:ReplayAgent"
AGENTS.register(
    "replay",
    _REPLAY,
    summary="biological-style replay: -o learner=backprop|sigprop|efp|stdp -o source=... -o schedule=...",
)
AGENTS.register(
    "replay-sleep",
    _REPLAY,
    summary="ER + Sleep Replay Consolidation in the spiking simulator (Tadros 2022), bias-free MLP",
    src=True,
    bias=False,
)
AGENTS.register(
    "replay-src",
    _REPLAY,
    summary="Sleep Replay Consolidation alone (no stored data), on SRC's bias-free 1200-1200 MLP",
    source="none",
    schedule="sleep",
    bias=False,
    hidden=(1200, 1200),
    momentum=0.5,
)
AGENTS.register(
    "replay-gsemm",
    _REPLAY,
    summary="replay recalled by per-class GSEMM (DSEM) sequence memories from 25%-zeroed cues",
    source="gsemm",
)
AGENTS.register(
    "replay-gsemm-cls",
    _REPLAY,
    summary="GSEMM replay + fast/slow learners with distillation (slow learner counted in memory)",
    source="gsemm",
    cls_distill=1.0,
)
AGENTS.register(
    "replay-generative",
    _REPLAY,
    summary="generative replay of new items: mixture states of GSEMM's dynamics",
    source="generative",
)
AGENTS.register(
    "replay-wave",
    _REPLAY,
    summary="awake replay of the latest experience held in a traveling-wave lattice, forward and reversed",
    source="wave",
    schedule="sequence",
)
AGENTS.register(
    "replay-sequence",
    _REPLAY,
    summary="time-compressed replay of GSEMM-recalled sequences, in order",
    source="gsemm",
    schedule="sequence",
)
AGENTS.register(
    "replay-prioritized", _REPLAY, summary="ER sampled in proportion to replay loss (Schaul 2016)", priority="loss"
)
AGENTS.register(
    "replay-forgetting", _REPLAY, summary="ER sampled by forgetting events (Toneva 2019)", priority="forgetting"
)
AGENTS.register(
    "replay-latent",
    _REPLAY,
    summary="latent replay of hidden-layer-1 features, lower layer frozen (Pellegrini 2020)",
    latent_layer=1,
)
AGENTS.register(
    "replay-cls",
    _REPLAY,
    summary="complementary learning systems: EMA slow learner + distillation (CLS-ER; slow learner counted)",
    cls_distill=1.0,
)
AGENTS.register(
    "replay-decay", _REPLAY, summary="ER with age-decayed replay weights and gist extraction", decay=0.3, gist=0.1
)

# Forward-only learners (agents/forward/).
AGENTS.register(
    "sigprop",
    "replaybench.agents.forward.sigprop:SigpropAgent",
    summary="signal propagation: forward-only, per-layer input-target losses (Kohan et al. 2023)",
)
AGENTS.register(
    "sigprop-cnn",
    "replaybench.agents.forward.sigprop:SigpropAgent",
    summary="sigprop, small CNN with per-sample norm",
    architecture="cnn",
    hidden=(32, 64),
    norm="layer",
)
AGENTS.register(
    "sigprop-local-replay",
    "replaybench.agents.forward.sigprop:SigpropAgent",
    summary="sigprop with layer-local replay in every layer (replay in several regions at once)",
    local_replay_size=200,
)
AGENTS.register(
    "efp",
    "replaybench.agents.forward.efp:EFPAgent",
    summary="error forward-propagation: output error looped into layer 1, two-phase settling (Kohan et al. 2018)",
)
