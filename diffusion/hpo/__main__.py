from diffusion.cli import run
from diffusion.hpo.cli import main

run(main)
