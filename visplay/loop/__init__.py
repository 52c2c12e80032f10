"""The self-play loop (PAPER.md, "The loop"), in the order the data flows.

``engine`` runs iterations and phases and commits each step; ``phases`` computes one step through the hooks
(image -> questions -> votes -> silver labels -> rewards -> advantages -> update); ``keys`` names every row and
position; ``votes`` is the majority vote; ``checkpoints`` holds the roles' live policies and their files;
``seeding`` derives one generator per draw; ``runsetup`` opens a run; ``progress`` talks to the terminal.
"""
