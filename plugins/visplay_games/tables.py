"""What the games plugin's run-log tables hold (``visplay_table_docs``: the datasette.json beside each run.db;
docs/games.md has the same table). Columns in the order the plugin declares them."""

from __future__ import annotations

from visplay_games import coldstart, gold, pools

TABLE_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    pools.TRUTH_TABLE: ("generated game image with its truth (never shown to the loop)", {
        "key": "<split>/<index>", "split": "train, heldout or coldstart", "image_id": "the image (images.image_id)",
        "game": "2048, shisen_sho, shapes, ...", "difficulty": "difficulty tier", "seed": "the image's seed",
        "description": "the scene in words", "state": "JSON: the game state", "qa": "JSON list of question, "
        "answer, kind, category",
    }),
    gold.EVAL_TABLE: ("held-out gold question answered by an iteration's reasoner", {
        "key": "i<iteration>/gold/<index>", "iteration": "self-play iteration (0: the cold-start model)",
        "image_id": "the image", "game": "its game", "difficulty": "difficulty tier", "kind": "question kind",
        "category": "question category", "question": "question text", "gold": "the true answer",
        "answers": "JSON list of the m sampled answers", "majority": "their majority answer",
        "confidence": "share of the m answers for the majority", "correct": "1 when the majority is gold (maj@m)",
        "sample_accuracy": "share of the m answers that are gold (pass@1)", "greedy": "the greedy answer",
        "greedy_correct": "1 when the greedy answer is gold",
    }),
    gold.SILVER_TABLE: ("silver label of a game image's question, checked against its gold answer", {
        "question_key": "questions.key", "iteration": "self-play iteration", "phase": "questioner or reasoner_set",
        "image_id": "the image", "game": "its game", "kind": "question kind", "question": "question text",
        "silver_label": "the voted label", "gold": "the true answer", "confidence": "share of votes for the label",
        "correct": "1 when the silver label is gold", "kept": "1 when the filters kept the question",
    }),
    coldstart.LOSS_TABLE: ("cold-start SFT step", {
        "role": "questioner or reasoner", "step": "SFT step", "loss": "training loss of the step",
    }),
}
