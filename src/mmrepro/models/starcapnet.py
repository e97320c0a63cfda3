"""StarCapNet: numerosity-aware image captioning (CNN encoder + GRU decoder).

Follows the project's StarCapNet notebook: a small convolutional encoder turns a grayscale image of
0-9 "stars" into one feature vector that initialises a GRU language decoder, trained with teacher
forcing and decoded greedily or with beam search. One change from the notebook, for counting: the
encoder keeps the 4x4 spatial grid (flatten, not global average pooling), so the feature vector can
still tell where, and therefore how many, discs there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmrepro.data.caption_vocab import BOS, EOS, PAD


@dataclass(frozen=True)
class StarCapNetConfig:
    vocab_size: int
    image_size: int = 64  # square grayscale input; must be divisible by 16
    channels: tuple[int, ...] = (16, 32, 32, 64)  # conv stages (3x3 conv, BN, ReLU, 2x2 max-pool)
    embed_dim: int = 64  # word embedding size
    hidden_dim: int = 256  # GRU state size = image feature size
    dropout: float = 0.1


class StarCapNet(nn.Module):
    def __init__(self, cfg: StarCapNetConfig):
        super().__init__()
        if cfg.image_size % (2 ** len(cfg.channels)):
            raise ValueError(f"image_size {cfg.image_size} not divisible by 2^{len(cfg.channels)}")
        self.cfg = cfg
        layers, c_in = [], 1
        for c_out in cfg.channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        grid = cfg.image_size // 2 ** len(cfg.channels)
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(cfg.dropout),
                                     nn.Linear(c_in * grid * grid, cfg.hidden_dim), nn.Tanh())
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(cfg.embed_dim, cfg.hidden_dim, batch_first=True)
        self.out = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_dim, cfg.vocab_size))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) uint8 or float in [0, 1] -> (1, B, hidden) initial GRU state."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return self.encoder(images.unsqueeze(1)).unsqueeze(0)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens (B, L) starting with <bos> -> logits (B, L-1, V) for tokens[:, 1:]."""
        h0 = self.encode(images)
        states, _ = self.gru(self.embed(tokens[:, :-1]), h0)
        return self.out(states)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.forward(images, tokens)
        return nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=PAD)

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int) -> torch.Tensor:
        """(B, H, W) -> (B, <= max_len) token ids (without <bos>), <eos>-terminated or cut at max_len."""
        h = self.encode(images)
        token = torch.full((images.shape[0], 1), BOS, dtype=torch.long, device=images.device)
        out, done = [], torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for _ in range(max_len):
            state, h = self.gru(self.embed(token), h)
            token = self.out(state).argmax(-1)
            token = torch.where(done.unsqueeze(1), torch.full_like(token, PAD), token)
            out.append(token)
            done |= token.squeeze(1) == EOS
            if done.all():
                break
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def beam_search(self, image: torch.Tensor, beam_size: int, max_len: int) -> list[int]:
        """One image (H, W) -> the highest log-probability token sequence (without <bos>, with <eos>)."""
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        h = self.encode(image.unsqueeze(0))  # (1, 1, H)
        beams = [([], 0.0, h)]  # (tokens, log-prob, state)
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_len):
            prev = torch.tensor([[b[0][-1] if b[0] else BOS] for b in beams], device=image.device)
            states = torch.cat([b[2] for b in beams], dim=1)
            out, new_states = self.gru(self.embed(prev), states)
            logp = self.out(out[:, 0]).log_softmax(-1)  # (beams, V)
            scores = torch.tensor([b[1] for b in beams], device=image.device).unsqueeze(1) + logp
            top = scores.flatten().topk(min(beam_size, scores.numel()))
            candidates = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                b, tok = divmod(flat, logp.shape[1])
                seq = beams[b][0] + [tok]
                if tok == EOS:
                    finished.append((seq, score))
                else:
                    candidates.append((seq, score, new_states[:, b : b + 1]))
            beams = candidates
            # stop once the best finished hypothesis beats every live beam (scores only decrease)
            if not beams or (finished and max(f[1] for f in finished) >= max(b[1] for b in beams)):
                break
        finished += [(b[0], b[1]) for b in beams]
        return max(finished, key=lambda f: f[1])[0]
