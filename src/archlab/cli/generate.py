"""``archlab generate RUN_DIR [-n N] [-o out.png|out.txt] [--steps S] [--guidance G]``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archlab.cli.app import app, console


@app.command("generate")
def generate_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory of a language model, VAE, GAN, diffusion model or flow."),
    n: int = typer.Option(64, "-n", help="Samples to draw (characters for a language model)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="out.png (samples) or out.txt (text); default RUN_DIR/samples.png or printed text."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion: DDIM steps (default: the full DDPM chain)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Diffusion: classifier-free guidance weight."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    prompt: str = typer.Option("\n", "--prompt", help="Language models: text to continue."),
    temperature: float = typer.Option(1.0, "--temperature", help="Language models: sampling temperature."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Language models: sample among the k likeliest tokens."),
) -> None:
    """Generate text or samples from a trained run."""
    from archlab.rundir import RunDir
    from archlab.runs.generate import generate_from_run, write_generated

    g = generate_from_run(
        run_dir, n, steps=steps, guidance=guidance, seed=seed, prompt=prompt, temperature=temperature, top_k=top_k
    )
    if g.kind == "text" and output is None:
        console.print(g.text, markup=False, highlight=False)
        return
    out = output or (run_dir / RunDir.SAMPLES)
    path = write_generated(g, out)
    console.print(f"wrote {'text' if g.kind == 'text' else f'{len(g.samples)} samples'} to [bold]{path}[/]")
