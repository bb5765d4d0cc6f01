"""Speech-to-text translation: a frozen speech upstream aligned to a small causal LM.

The stage follows SLAM-ASR/SALMONN: the upstream's layers are combined with learnable weights,
a projector stacks consecutive frames and maps them into the LM's embedding space, and a causal
LM tuned on Standard Dutch writes a Dutch transcript or an English translation after a task
prompt. Modules: ``cells`` (which grid cells get the stage, importable without torch),
``lm_text`` (the LM's text sources, never a dev/test sentence), ``tokenizer`` and ``dutch_lm``
(the LM built and tuned on Dutch), ``projector`` and ``model`` (the speech LLM), ``train``
(alignment), ``decode`` (beam search), ``scoring`` (BLEU/chrF and WER with bootstrap
intervals) and ``table`` (results/st_table.csv and its plot).
"""
