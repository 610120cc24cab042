"""MisGAN (Li, Jiang and Marlin, ICLR 2019): the losses and the one training loop.

The loop follows the paper: every batch updates the critics (Dx, Dm and, with an imputer, Di) with
WGAN-GP; every `n_critic` batches the generators are updated once:
  Gx minimises L_x (+ beta * L_i with the joint imputer)      eq. 6 / 10
  Gm minimises L_m + alpha * L_x                                eq. 7
  Gi minimises L_i                                              eq. 9
`steps` counts generator updates, so a run of S steps sees S * n_critic batches.

Missingness that depends on the data (`mask_model`, issue 14). The paper's factorisation p(x, m) = p(x) p(m)
(MCAR) lets eq. 4 and 5 match the masked data and the masks separately. Under MNAR the mask is drawn given the
complete image, m ~ Gm(eps, x) with x = Gx(z), and the two are no longer independent, so the data critic
judges them jointly. By default it sees the pair g(x, m) = (x * m, m) as two channels (`data_critic_sees_mask`);
f_tau(x, m) with tau outside the data range (`--no-data-critic-sees-mask`, tau = -1) is also one-to-one in
(x_obs, m), but it learnt slower: under MCAR dropout 50% the independent model with tau -1 reached generation
FID 180 at 4,000 steps against 118 with tau 0, and the self-masking model 180 with f_-1 against 90 with the pair.
  L_x(Dx, Gx, Gm) = E_(x,m)~p_data [Dx(g(x, m))] - E_z,eps [Dx(g(Gx(z), Gm(eps, Gx(z))))]     (cf. eq. 4)
  L_m(Dm, Gm)     = E_m~p_data [Dm(m)] - E_z,eps [Dm(Gm(eps, Gx(z)))]                                (cf. eq. 5)
  min_Gx max_Dx L_x + L_m;   min_Gm max_Dm L_m + alpha * L_x                                  (cf. eq. 6, 7)
L_x reaches Gx through the pixels and through the masks they cause, and so does L_m: the masks are now a
function of Gx's images, and the law of the masks p(m) = E_x[p(m | x)] is Gx's to match as much as Gm's.
Under self-masking with bright pixels missing, the masks are most of what the data say about the digits (the
observed pixels are nearly all dark); with L_m held off Gx (the first version), Gx collapsed to black images.
Matching the law of g(x, m) matches the observed-data law p(x_obs, m), which is all the data show; whether
that fixes p(x) is the identifiability question, answered by the mask model's restrictions
(models.SelfMaskingMaskModel).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from .config import MASK_CRITIC_TEMPERATURE, MASK_TEMPERATURE, MASK_TEMPERATURE_FLOOR, MisGANConfig  # noqa: F401
from .critic_gradients import critic_loss
from .data import IncompleteDataset, as_float_images
from .device import pick_device
from .distributed import average, average_gradients, rank_and_world
from .imputers import check_incomplete_batch, paste_observed
from .models import Networks, SelfMaskingMaskModel, TemperatureSigmoid, build_networks
from .runs import CheckpointError, RunDir
from .training import Cadence, EpochOrder, drive


def f_tau(x: torch.Tensor, m: torch.Tensor, tau: float = 0.0) -> torch.Tensor:
    """The masking operator of eq. 3: x where observed, tau where missing."""
    if tau == 0.0:
        return x * m
    return x * m + tau * (1 - m)


def _with_mask_channel(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x with the mask m appended as one more channel (the critics that judge (image, mask) pairs)."""
    return torch.cat([x, m.to(x.dtype).expand(len(x), 1, *x.shape[2:])], 1)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient times `scale` backward.

    Gm's objective is L_m + alpha * L_x while Gx's is L_x: routing Gm's share of L_x through this lets one
    backward pass through Dx serve both generators.
    """
    return _ScaleGrad.apply(x, scale)


def initial_self_masking_slope(x: torch.Tensor, m: torch.Tensor, magnitude: float = 4.0,
                               deadband: float = 0.02) -> float:
    """A starting slope for the self-masking mask model, from the sign the incomplete data suggest.

    A pixel's observed neighbours are a proxy (a shadow variable) for its own hidden value: if pixels go
    missing where their observed neighbours are bright, bright values are the ones missing. Measured on
    mnist-5k, the correlation of "missing" with the neighbours' mean observed intensity is +0.12 under
    self-masking 50% (bright missing), +0.03 at 80%, -0.42 with dark pixels missing, 0.000-0.001 under MCAR
    dropout. Returns -magnitude (bright pixels less often observed), +magnitude, or 0 where the correlation is
    within the deadband (no evidence: MCAR, where 0 is the truth). The magnitude is in logit per unit of
    intensity. Started at 4, 8, 12 and 20 (self-masking 50%, 1,500-2,500 steps), the slope moved toward -2
    from -4 and toward -13 from -20; only -4 gave bright digits (too bright and too alike: README); from
    -8 and -12 Gx drifted to white backgrounds, from -20 to grey ones with dark digits.
    """
    every = max(1, len(x) // 2000)
    x, m = x[::every], m[::every]  # 2,000 examples or so: plenty for a sign
    x = as_float_images(x) if not x.is_floating_point() else x
    mf = m.float()
    xo = x.float().mean(1, keepdim=True) * mf
    kernel = torch.ones(1, 1, 3, 3, dtype=xo.dtype)
    kernel[0, 0, 1, 1] = 0
    total = torch.nn.functional.conv2d(xo, kernel, padding=1)
    count = torch.nn.functional.conv2d(mf, kernel, padding=1)
    has = count > 0
    if int(has.sum()) < 2:
        return 0.0
    neighbour = (total / count.clamp(min=1))[has]
    missing = (1 - mf)[has]
    if float(neighbour.std()) == 0 or float(missing.std()) == 0:
        return 0.0
    r = float(torch.corrcoef(torch.stack([neighbour, missing]))[0, 1])
    if not math.isfinite(r) or abs(r) < deadband:
        return 0.0
    return -magnitude if r > 0 else magnitude


def initial_self_masking_offset(m: torch.Tensor, slope: float) -> float:
    """The offset the self-masking mask model starts from: where the data give no sign of dependence (slope 0)
    the MCAR fit, logit of the observed share; else 0, where it was measured (README).

    From 0, at dropout 80% the offset took about 300 steps to reach logit(0.2) = -1.39 and dragged the slope
    along (to -1.24 at step 300: Gx's first samples are grey, so both get the same gradient), which raised the
    data critic's lambda to 1.3 before the slope went back to 0 by step 600."""
    if slope != 0.0:
        return 0.0
    observed = float(m.float().mean().clamp(1e-3, 1 - 1e-3))
    return math.log(observed / (1 - observed))


# ---------------------------------------------------------------------------------------------
# The trainer


class MisGAN:
    """A MisGAN run: networks, optimizers, data and the training loop.

    >>> gan = MisGAN(MisGANConfig(steps=300), run_dir="runs/demo")   # new run
    >>> gan.train()                                                    # config.steps generator updates
    >>> gan = MisGAN.load("runs/demo"); gan.train(300)                 # resume for 300 more
    >>> gan.sample(16); gan.impute(x, m, draws=8)
    """

    name = "misgan"

    def __init__(self, config: MisGANConfig, data: IncompleteDataset | None = None,
                 run_dir: str | Path | RunDir | None = None, _resume: bool = False):
        config.validate()
        config = config.resolved()
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.rank, self.world = rank_and_world()  # data-parallel under torchrun: see distributed.py
        self.device = pick_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.data = data if data is not None else config.data.load()
        self.shape = self.data.shape
        # The self-masking model's mask critic judges draws of its own where its lambda differs from Dx's.
        own_draw = (config.mask_critic and config.mask_critic_temperature is not None
                    and config.mask_critic_temperature != config.temperature)
        self._mask_critic_output = (TemperatureSigmoid(config.mask_critic_temperature, config.mask_activation)
                                    if own_draw else None)
        slope = offset = 0.0  # the self-masking model's start (a resumed run's comes from its checkpoint)
        if config.mask_model == "self-masking" and not _resume:
            slope = initial_self_masking_slope(self.data.x, self.data.m)
            offset = initial_self_masking_offset(self.data.m, slope)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.nets: Networks = build_networks(config.arch, self.shape, imputer=config.imputer,
                                                 temperature=config.temperature,
                                                 mask_activation=config.mask_activation, latent=config.latent,
                                                 mask_model=config.mask_model,
                                                 imputer_sees_mask=config.imputer_sees_mask,
                                                 imputer_critic_sees_mask=config.imputer_critic_sees_mask,
                                                 data_critic_sees_mask=config.data_critic_sees_mask,
                                                 temperature_floor=config.temperature_floor,
                                                 initial_slope=slope, initial_offset=offset,
                                                 mask_noise=config.mask_noise,
                                                 imputer_width=config.imputer_width,
                                                 imputer_depth=config.imputer_depth)
        for module in self.nets.modules().values():
            module.to(self.device)
            if config.arch == "conv":
                module.to(memory_format=torch.channels_last)  # oneDNN / cuDNN's faster convolution layout
        if config.imputer and config.imputer_mode != "joint":
            self._load_pretrained_gx(config.pretrained)
        # Weight averages (config.ema) of the networks that sample and impute: what sample(), sample_masks()
        # and impute() use, and so every FID. Training updates the live networks only.
        self.averaged: dict[str, nn.Module] = {}
        if config.ema:
            for name, net in self.nets.modules().items():
                if name in ("gx", "gm", "gi"):
                    self.averaged[name] = copy.deepcopy(net).eval().requires_grad_(False)
        self.optimizers = self._make_optimizers()
        self.step = 0          # generator updates done
        self.batches = 0       # critic updates done
        self.train_time = 0.0  # seconds spent in train(), summed over sessions
        self.noise = torch.Generator(device=self.device).manual_seed(config.seed)
        self.mask_noise = torch.Generator().manual_seed(config.seed + 7919)  # target masks are drawn on the CPU
        self.history: list[dict[str, Any]] = []
        self.grids: dict[str, torch.Tensor] = {}
        if self.data.compact:
            # A uint8 store (CelebA): read a minibatch at a time, masked and made float on the way in.
            self._x, self._m = self.data.x, self.data.m
        else:
            self._x = self.data.observed_only().to(self.device)
            self._m = self.data.m.to(self.device)
        self._target_masks = config.data.mask_process() if config.imputer_mode == "target" else None
        self._order = EpochOrder(len(self._x), config.batch_size, config.seed,
                                 "cpu" if self.data.compact else self.device)
        if self._order.batch_size % self.world:
            raise ValueError(f"--batch-size is the global batch and must divide evenly over the {self.world} "
                             f"processes; got {self._order.batch_size}")
        self._b = self._order.batch_size // self.world  # this rank's rows of every minibatch
        self._live_fid = None
        self._reconcile_log = False  # set by load(): metrics.jsonl may hold lines past the checkpoint
        self._samples_ahead: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []
        self._batch_norm_generators = any(isinstance(mod, nn.modules.batchnorm._BatchNorm)
                                          for net in (self.nets.gx, self.nets.gi) if net is not None
                                          for mod in net.modules())
        if self.rank != 0:
            self.run = None  # rank 0 alone writes the run folder
        elif isinstance(run_dir, RunDir):
            self.run = run_dir
        elif run_dir is not None:
            self.run = RunDir(run_dir) if _resume else RunDir.create(run_dir, {"kind": "misgan", **config.to_dict()})
        else:
            self.run = None

    # -- construction helpers -----------------------------------------------------------------

    def _load_pretrained_gx(self, path: str | None) -> None:
        source = MisGAN.load(path, device=str(self.device))  # type: ignore[arg-type]
        if source.shape != self.shape:
            raise ValueError(f"pre-trained run {path} models {source.shape} images, but the data are {self.shape}")
        if type(source.nets.gx) is not type(self.nets.gx):
            raise ValueError(f"pre-trained run {path} uses arch {source.config.arch!r}; use the same --arch")
        self.nets.gx.load_state_dict(source.nets.gx.state_dict())

    def _trainable(self) -> dict[str, nn.Module]:
        nets = self.nets
        if self.config.imputer and self.config.imputer_mode != "joint":
            return {"gi": nets.gi, "di": nets.di}  # type: ignore[dict-item]
        return nets.modules()

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        opts = {}
        for name, module in self._trainable().items():
            lr = c.imputer_lr if name in ("gi", "di") else c.lr
            if name == "dm" and not c.mask_critic:
                continue
            if name == "gm" and not c.mask_critic and c.ambient_masks == "real":
                continue
            # fused Adam: one kernel per parameter instead of a dozen elementwise passes.
            opts[name] = torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(c.betas), fused=True)
        return opts

    def _adam_step(self, names: list[str]) -> None:
        """`optimizers[k].step()` for each k, as one fused Adam call per learning rate.

        The result is the same as stepping each optimizer; sharing the call saves Optimizer.step's per-call
        bookkeeping, which is a few percent of an FC step on a CPU. The optimizers keep their own state, so
        checkpoints do not change.
        """
        calls: dict[tuple, tuple[list[torch.Tensor], ...]] = {}
        for k in names:
            opt = self.optimizers[k]
            groups = [(group, [p for p in group["params"] if p.grad is not None]) for group in opt.param_groups]
            if any(not opt.state[p] for _, params in groups for p in params):
                opt.step()  # the first step creates the state the way torch's Adam does
                continue
            for group, params in groups:
                key = (group["lr"], group["betas"], group["eps"], group["weight_decay"], group["fused"])
                lists = calls.setdefault(key, ([], [], [], [], []))
                for p in params:
                    state = opt.state[p]
                    for dest, t in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"]),
                                       strict=True):
                        dest.append(t)
        for (lr, (beta1, beta2), eps, weight_decay, fused), (params, grads, avgs, sqs, steps) in calls.items():
            adam_update(params, grads, avgs, sqs, [], steps, fused=fused, amsgrad=False, beta1=beta1,
                        beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)

    # -- noise and batches --------------------------------------------------------------------

    def _rows(self, draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
        """This rank's n rows of a draw made for all ranks: `draw(N)` draws N rows for the global batch (n
        rows per rank are n / b batches of b), and each rank keeps its part of every batch. In one process it
        is just draw(n)."""
        if self.world == 1:
            return draw(n)
        k, b = n // self._b, self._b
        full = draw(n * self.world)
        return full.view(k, self.world * b, *full.shape[1:])[:, self.rank * b:(self.rank + 1) * b].reshape(
            n, *full.shape[1:])

    def _z(self, n: int) -> torch.Tensor:
        return self._rows(lambda k: torch.randn(k, self.config.latent, generator=self.noise, device=self.device), n)

    def _uniform(self, n: int, *shape: int) -> torch.Tensor:
        return self._rows(lambda k: torch.rand(k, *shape, generator=self.noise, device=self.device), n)

    def _batch_indices(self, batch: int) -> torch.Tensor:
        """This rank's rows of minibatch number `batch`, in the shared (seed, epoch) order (EpochOrder)."""
        idx = self._order.indices(batch)
        return idx if self.world == 1 else idx[self.rank * self._b:(self.rank + 1) * self._b]

    def _examples(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training examples idx: observed entries only, float, on the device."""
        if not self.data.compact:
            return self._x[idx], self._m[idx]
        m = self._m[idx].to(self.device).float()
        return as_float_images(self._x[idx].to(self.device)) * m, m

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next minibatch (this rank's part of it under torchrun)."""
        return self._examples(self._batch_indices(self.batches))

    def _target_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 11: Gx samples masked by the target missingness stand in for real incomplete data."""
        m = self._rows(lambda k: self._target_masks.sample(k, *self.shape[1:], self.mask_noise), n).to(self.device)
        return self.nets.gx(self._z(n)) * m, m

    def _real_masks_like(self, n: int) -> torch.Tensor:
        idx = self._rows(lambda k: torch.randint(0, len(self._m), (k,), generator=self.noise, device=self.device), n)
        return self._m[idx.to(self._m.device)].to(self.device).float()

    def _critic_samples(self, b: int, masks: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                                           torch.Tensor | None]:
        """Gx and Gm samples for this critic step, each from fresh noise (Gm's for Dx, and for Dm, the same ones
        or with `mask_critic_temperature` their own), and with an imputer (joint or standalone) the
        imputations of this step's real minibatch.

        The generators and the imputer change only in generator steps, so everything the critic steps up to the
        next one need comes from one forward pass per network over all of them (the minibatches ahead are
        known: training.EpochOrder is a function of the batch number): the same computation in fewer and larger
        products. Not with batch norm (DCGAN, the U-Net imputer), whose statistics are per minibatch.
        """
        c = self.config
        if not self._samples_ahead:
            k = 1 if self._batch_norm_generators else c.n_critic - self.batches % c.n_critic
            with torch.no_grad():
                all_x = self.nets.gx(self._z(k * b))
                xs = all_x.split(b)
                ms = self._fake_masks(k * b, all_x).split(b) if masks else (None,) * k
                ms_dm = self._fake_masks(k * b, all_x, for_mask_critic=True).split(b) \
                    if masks and self._mask_critic_output is not None else ms
                imputed: tuple[torch.Tensor | None, ...] = (None,) * k
                if self._imputing and c.imputer_mode != "target":
                    idx = torch.cat([self._batch_indices(self.batches + j) for j in range(k)])
                    imputed = self.impute_batch(*self._examples(idx), train=True).split(b)
            self._samples_ahead = list(zip(xs, ms, ms_dm, imputed, strict=True))
        return self._samples_ahead.pop(0)

    @property
    def _imputing(self) -> bool:
        """Whether this step trains Gi and Di: with an imputer, from generator step `imputer_start` on."""
        return self.config.imputer and self.step >= self.config.imputer_start

    def _fake_masks(self, n: int, x: torch.Tensor, for_mask_critic: bool = False) -> torch.Tensor:
        """n masks from Gm; the mask models that see the image get the complete images x (Gx samples). With
        `mask_critic_temperature`, the draws Dm judges are relaxed at that lambda (their own noise)."""
        c = self.config
        if not c.mask_critic and c.ambient_masks == "real":
            return self._real_masks_like(n)
        if c.mask_model == "self-masking":
            output = self._mask_critic_output if for_mask_critic else None
            return self.nets.gm(x, self._uniform(n, 1, *self.shape[1:]), output)
        if c.mask_model == "conditional":
            return self.nets.gm(self._z(n), x)
        if c.mask_noise:
            return self.nets.gm(self._z(n), self._uniform(n, 1, *self.shape[1:]))
        return self.nets.gm(self._z(n))

    # -- one step ------------------------------------------------------------------------------

    def _critic_update(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        c, nets, b = self.config, self.nets, len(x)
        out: dict[str, torch.Tensor] = {}
        gen_side = self.config.imputer_mode == "joint" or not c.imputer
        fake_x, fake_m, fake_m_dm, imputed = self._critic_samples(b, gen_side)
        if c.imputer and c.imputer_mode == "target":
            with torch.no_grad():
                x, m = self._target_batch(b)
                imputed = self.impute_batch(x, m, train=True)
        losses = []
        if gen_side:
            real = self._data_critic_input(x, m)
            fake = self._data_critic_input(fake_x, fake_m)
            loss, w = critic_loss(nets.dx, real, fake, self._uniform(b, 1, 1, 1), c.gp_weight)
            losses.append(loss)
            out["loss_dx"], out["w_x"] = loss, w
            if c.mask_critic:
                loss, w = critic_loss(nets.dm, m, fake_m_dm, self._uniform(b, 1, 1, 1), c.gp_weight)
                losses.append(loss)
                out["loss_dm"], out["w_m"] = loss, w
        if self._imputing:
            # Di maximises L_i = E[Di(Gx(z))] - E[Di(Gi(x, m, w))]: Gx samples play "real".
            loss, w = critic_loss(nets.di, self._imputer_critic_input(fake_x, m),
                                  self._imputer_critic_input(imputed, m), self._uniform(b, 1, 1, 1), c.gp_weight)
            losses.append(loss)
            out["loss_di"], out["w_i"] = loss, w
        critics = [k for k in ("dx", "dm", "di") if k in self.optimizers]
        for k in critics:
            self.optimizers[k].zero_grad(set_to_none=True)
        sum(losses).backward()  # the critics share no parameters: one backward serves all
        if self.world > 1:
            average_gradients([self.nets.modules()[k] for k in critics])
        self._adam_step(critics)
        return out

    def _generator_update(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        c, nets, b = self.config, self.nets, len(x)
        out: dict[str, torch.Tensor] = {}
        critics = [nets.dx, nets.dm, nets.di]
        for critic in critics:
            if critic is not None:
                critic.requires_grad_(False)  # generators' step needs no critic weight gradients
        total = torch.zeros((), device=self.device)
        gen_side = not c.imputer or c.imputer_mode == "joint"
        sees_x = gen_side and c.mask_model != "independent" and "gm" in self.optimizers
        if gen_side:
            fake_x = nets.gx(self._z(b))
            fake_m = self._fake_masks(b, fake_x)
            if sees_x:
                # m = Gm(eps, Gx(z)): L_x reaches Gx along both paths (its pixels and the masks they cause);
                # Gm's share is scaled by alpha after the backward pass, and L_m follows it (below).
                loss_x = -nets.dx(self._data_critic_input(fake_x, fake_m)).mean()
            else:
                # L_x's generator term reaches Gx in full and Gm scaled by alpha (eq. 6 and 7).
                loss_x = -nets.dx(self._data_critic_input(
                    fake_x, scale_grad(fake_m, c.alpha) if fake_m.requires_grad else fake_m)).mean()
            total = total + loss_x
            out["loss_gx"] = loss_x
            if c.mask_critic and not sees_x:
                loss_m = -nets.dm(fake_m).mean()
                total = total + loss_m
                out["loss_gm"] = loss_m
        if self._imputing:
            if c.imputer_mode == "target":
                with torch.no_grad():
                    x, m = self._target_batch(b)
            imputed = self.impute_batch(x, m, train=True)
            if gen_side and c.beta:
                # Gx's share of L_i (eq. 10), beta * E[Di(Gx(z))], pulls Gx samples toward the imputed real
                # data; one Di pass serves both terms.
                scores = nets.di(self._imputer_critic_input(torch.cat([imputed, fake_x]), torch.cat([m, m])))
                loss_i = -scores[:b].mean()
                total = total + loss_i + c.beta * scores[b:].mean()
            else:
                loss_i = -nets.di(self._imputer_critic_input(imputed, m)).mean()
                total = total + loss_i
            out["loss_gi"] = loss_i
        gens = [k for k in ("gx", "gm", "gi") if k in self.optimizers]
        for k in gens:
            self.optimizers[k].zero_grad(set_to_none=True)
        second = sees_x and c.mask_critic
        total.backward(retain_graph=second)  # L_m's pass below goes back through Gx's graph
        if sees_x:
            for p in nets.gm.parameters():
                if p.grad is not None:
                    p.grad.mul_(c.alpha)
            if c.mask_critic:
                # L_m in full for Gm and for Gx, whose images the masks are drawn from (module docstring).
                loss_m = -nets.dm(self._fake_masks(b, fake_x, for_mask_critic=True)).mean()
                loss_m.backward()
                out["loss_gm"] = loss_m
        if self.world > 1:
            average_gradients([self.nets.modules()[k] for k in gens])
        self._adam_step(gens)
        for critic in critics:
            if critic is not None:
                critic.requires_grad_(True)
        return out

    def _data_critic_input(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """What Dx sees of (x, m): f_tau(x, m) (eq. 3), or with `data_critic_sees_mask` the pair (f_tau(x, m), m)
        as channels. Either is one-to-one in (x_obs, m) when tau is outside the data range or the mask is a
        channel, which a joint critic needs under MNAR (module docstring). With the mask as a channel, tau stays
        0 (missing pixels read as black, as in the paper) and Dx's first layer weighs the mask on its own,
        where f_-1 = x*m + m - 1 ties the mask's weights to the pixels'."""
        masked = f_tau(x, m, self.config.tau)
        if not self.config.data_critic_sees_mask:
            return masked
        if self.config.mask_channel_gate:
            # The channel weighed by the self-masking model's learnt dependence, for real and generated pairs
            # alike. At slope 0 the model's masks are independent of its images, and (x * m, m) tells Dx nothing
            # that x * m does not (Dm judges m on its own, eq. 5), while the channel slowed Dx under MCAR: at
            # dropout 80% (mnist-5k, 4,000 steps, seeds 0 and 1) generation FID 157.4 and 150.1 with the gate
            # against 258.0 and 261.1 without, and the independent model's 220.2 and 219.2 (README). Where
            # the data suggest a dependence the slope starts at +-4 (initial_self_masking_slope), the gate open.
            m = m * self.nets.gm.dependence()
        return _with_mask_channel(masked, m)

    def _imputer_critic_input(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """What Di sees of an image x imputed under mask m (or of a Gx sample paired with m): x alone (eq. 12),
        or with `imputer_critic_sees_mask` the pair (x, m) as two channels.

        The pair is a conditional critic, not the paper's: Gx(z) is paired with the very mask the real batch
        has, which is a fair draw of p(m) independent of z under MCAR, so at the optimum
        (Gi(x, m, w), m) ~ (Gx(z), m) jointly, which implies eq. 12's marginal match and asks it of every mask
        separately. Di then knows which pixels Gi made and which are given, and need not infer that from
        their values."""
        return _with_mask_channel(x, m) if self.config.imputer_critic_sees_mask else x

    def impute_batch(self, x: torch.Tensor, m: torch.Tensor, train: bool = False,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Gi(x, m, w) = x*m + Ĝi(x*m + w*(1-m)) * (1-m) (eq. 12), w ~ U[0, 1) of x's shape."""
        if self.nets.gi is None:
            raise RuntimeError("this run has no imputer; train one with --imputer")
        if train:
            w = self._rows(lambda k: torch.rand((k, *x.shape[1:]), generator=self.noise, device=x.device), len(x))
        else:
            w = torch.rand(x.shape, generator=generator, device=x.device)
        observed = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
        filled = self.nets.gi(observed + w * (1 - m), m)
        return paste_observed(observed, m, filled)

    # -- the loop -----------------------------------------------------------------------------

    def train(self, steps: int | None = None, callback: Callable[[MisGAN], None] | None = None,
              progress: bool = False) -> MisGAN:
        """Run `steps` more generator updates (default: config.steps) through the training driver.
        `callback(self)` runs after each one and may raise StopTraining to end early (a checkpoint is still
        written); Ctrl-C writes one too."""
        c = self.config
        cadence = Cadence(log_every=c.log_every, eval_every=int(c.fid_every or 0), sample_every=c.sample_every,
                          checkpoint_every=c.checkpoint_every, checkpoint_minutes=c.checkpoint_minutes)
        drive(self, c.steps if steps is None else steps, cadence, callback, progress,
              progress_fields=("w_x", "w_m", "w_i"))
        return self

    # -- the driver's hooks (training.Steppable) ---------------------------------------------

    @property
    def can_save(self) -> bool:
        return self.run is not None

    @property
    def epochs(self) -> float:
        """Passes over the training data so far (critic updates / batches per epoch)."""
        return self._order.epochs(self.batches)

    def begin_training(self) -> None:
        if self._reconcile_log and self.run is not None:
            self.run.truncate_metrics(self.step)
            self._reconcile_log = False
        for module in self.nets.modules().values():
            module.train()
        if self.config.imputer and self.config.imputer_mode != "joint":
            self.nets.gx.eval()
        self._samples_ahead = []  # the networks may have been changed or loaded since the last call

    def mask_temperature(self, step: int | None = None) -> float:
        """lambda at generator step `step` (default: the current one): `temperature`, or with an anneal
        temperature * (temperature_final / temperature) ** (step / temperature_steps) up to temperature_steps."""
        c = self.config
        if c.temperature_final is None:
            return c.temperature
        t = min(1.0, (self.step if step is None else step) / c.temperature_steps)
        return c.temperature * (c.temperature_final / c.temperature) ** t

    def _set_mask_temperature(self) -> None:
        """Gm's output layers at this step's lambda (only an annealed run's changes)."""
        if self.config.temperature_final is None:
            return
        lam = self.mask_temperature()
        for net in (self.nets.gm, self.averaged.get("gm")):
            for module in net.modules() if net is not None else ():
                if isinstance(module, TemperatureSigmoid):
                    module.temperature = lam

    def train_step(self) -> dict[str, torch.Tensor]:
        """n_critic critic updates, one per minibatch, then one generator update (on the last minibatch). An
        annealed Gm is at this step's lambda already (set after the previous step, and by load)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            while True:
                x, m = self._batch()
                record = self._critic_update(x, m)
                self.batches += 1
                if self.batches % self.config.n_critic == 0:
                    break
            record.update(self._generator_update(x, m))
        self._samples_ahead = []  # they came from the generators before this update
        self._update_averages()
        self.step += 1
        self._set_mask_temperature()  # the next step's lambda, which samples between steps and a reload use
        return record

    @torch.no_grad()
    def _update_averages(self) -> None:
        """avg <- d avg + (1 - d) live after each generator update, d = min(ema, (1 + t) / (10 + t)) after t
        updates (the usual warm-up, so the first average is not the initial weights; Gi counts from
        imputer_start). Averaging a GAN generator's iterates damps its oscillation (Yazici et al., ICLR 2019):
        here MisGAN's imputation FID moved by 20-50% between neighbouring checkpoints at dropout 80%."""
        for name, avg in self.averaged.items():
            if name == "gi" and not self._imputing:
                continue
            t = self.step - (self.config.imputer_start if name == "gi" else 0)
            decay = min(self.config.ema, (1 + t) / (10 + t))
            live = getattr(self.nets, name)
            torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1 - decay)
            for mine, theirs in zip(avg.buffers(), live.buffers(), strict=True):
                mine.copy_(theirs)  # batch-norm statistics: the live network's

    def inference_net(self, name: str) -> nn.Module:
        """The network that samples or imputes: its weight average when config.ema, else the live one."""
        return self.averaged[name] if name in self.averaged else getattr(self.nets, name)

    def _checkpoint_modules(self) -> dict[str, nn.Module]:
        return {**self.nets.modules(), **{f"{k}_avg": v for k, v in self.averaged.items()}}

    def log(self, records: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        # One host sync per log line: the per-step losses stay on the device until here.
        keys = records[0].keys()
        stacked = {k: torch.stack([r[k].detach() for r in records]).mean() for k in keys}
        values = torch.stack(list(stacked.values()))
        values = (average(values) if self.world > 1 else values).tolist()  # the global batch's losses
        line: dict[str, Any] = {"step": self.step, "time": round(self.train_time, 3)}
        line.update(dict(zip(keys, values, strict=True)))
        if isinstance(self.nets.gm, SelfMaskingMaskModel):
            line.update({k: round(v, 4) for k, v in self.nets.gm.mechanism().items()})
        self.history.append(line)
        if self.run is not None:
            self.run.log_metrics(line)
        return line

    def evaluate_point(self) -> None:
        """A live FID point (metrics.LiveFID: a cheap FID of fixed-noise Gx samples), and with an imputer the
        imputation FID of a fixed subset. Rank 0 only under torchrun."""
        from .metrics import LiveFID

        if self.rank != 0:
            return
        if self._live_fid is None:
            # The live FID's noise seed is fixed (not the run's seed) so curves compare across runs.
            reference = self.data.subset(slice(0, 10_000)).x if self.data.compact else self.data.x
            self._live_fid = LiveFID(self.config.data.dataset, reference if self.data.ground_truth else None,
                                     n_samples=self.config.fid_samples)
        value = self._live_fid(lambda n, gen: self.sample(n, generator=gen))
        record = {"step": self.step, "time": round(self.train_time, 3), "fid": value}
        if self.nets.gi is not None and self.data.ground_truth and self._imputing:
            # The imputer's curve: imputation FID of a fixed subset of the training examples, fixed noise
            # (the same subset and seed as GAIN's and ConvAC's best-FID selection, so the curves compare).
            from .metrics import imputation_fid

            subset = self.data.subset(slice(0, min(1000, len(self.data))))
            record["imputation_fid"] = imputation_fid(self, subset, self._live_fid.extractor, seed=0)
        self.history.append(record)
        if self.run is not None:
            self.run.log_metrics(record)

    # -- outputs ------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n complete images from Gx, on the CPU."""
        return self._generate(self.inference_net("gx"), n, generator)

    @torch.no_grad()
    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n masks from Gm (values in [0, 1]; binary for the hard variants). A mask model that sees the image
        masks fresh Gx samples."""
        if self.config.mask_model == "independent" and not self.config.mask_noise:
            return self._generate(self.inference_net("gm"), n, generator)
        return self.sample_with_masks(n, generator)[1]

    @torch.no_grad()
    def sample_with_masks(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (x, m) from the model: complete Gx samples and the masks Gm gives them (for the independent
        mask model the two are independent draws)."""
        gen = generator or torch.Generator().manual_seed(0)
        x = self.sample(n, gen)
        gm = self.inference_net("gm")
        was = gm.training
        gm.eval()
        xd = x.to(self.device)
        if self.config.mask_model == "self-masking":
            # the mask critic's draws where it has its own (sharper: MisGANConfig.mask_critic_temperature)
            m = gm(xd, torch.rand(n, 1, *self.shape[1:], generator=gen).to(self.device), self._mask_critic_output)
        elif self.config.mask_model == "conditional":
            m = gm(torch.randn(n, self.config.latent, generator=gen).to(self.device), xd)
        elif self.config.mask_noise:
            z = torch.randn(n, self.config.latent, generator=gen).to(self.device)
            m = gm(z, torch.rand(n, 1, *self.shape[1:], generator=gen).to(self.device))
        else:
            m = gm(torch.randn(n, self.config.latent, generator=gen).to(self.device))
        gm.train(was)
        return x, m.float().cpu()

    def _generate(self, net: nn.Module, n: int, generator: torch.Generator | None) -> torch.Tensor:
        was = net.training
        net.eval()
        gen = generator or torch.Generator().manual_seed(0)
        z = torch.randn(n, self.config.latent, generator=gen).to(self.device)
        out = net(z).float().cpu()
        net.train(was)
        return out

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """K imputations of each (x, m): (draws, N, C, H, W), observed entries kept bit-exact."""
        check_incomplete_batch(x, m)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"this model imputes {self.shape} images; got {tuple(x.shape[1:])}")
        if draws < 1:
            raise ValueError(f"draws must be at least 1; got {draws}")
        if self.nets.gi is None:
            raise RuntimeError("this run has no imputer; train one with --imputer")
        gi = self.inference_net("gi")
        was = gi.training
        gi.eval()
        gen = generator or torch.Generator().manual_seed(0)
        xs = x.unsqueeze(0).expand(draws, *x.shape).reshape(-1, *x.shape[1:])
        ms = m.unsqueeze(0).expand(draws, *m.shape).reshape(-1, *m.shape[1:])
        w = torch.rand(xs.shape, generator=gen)
        observed = torch.where(ms.bool(), xs, torch.zeros(()))
        out = []
        for i in range(0, len(xs), 1024):  # bounded memory for large datasets
            sl = slice(i, i + 1024)
            inp = (observed[sl] + w[sl] * (1 - ms[sl])).to(self.device)
            out.append(gi(inp, ms[sl].to(self.device)).float().cpu())
        gi.train(was)
        filled = torch.cat(out)
        return paste_observed(xs, ms, filled).view(draws, *x.shape)

    @torch.no_grad()
    def make_grids(self, n: int = 64, save: bool = True) -> dict[str, torch.Tensor]:
        """Grids of training examples (missing in grey), Gx and Gm samples and imputations; `save` writes them
        to the run folder. Rank 0 only under torchrun."""
        from .grids import show_missing

        if self.rank != 0:
            return {}
        gen = torch.Generator().manual_seed(1234)  # fixed noise: grids compare across steps
        k = min(n, len(self.data))
        first = self.data.subset(slice(0, k))
        grids = {"data": show_missing(first.x, first.m), "gx": self.sample(n, gen)}
        if self.nets.gm is not None and (self.config.mask_critic or self.config.ambient_masks == "learned"):
            grids["gm"] = self.sample_masks(n, gen)
        if self.nets.gi is not None:
            grids["imputed"] = self.impute(first.x, first.m, draws=1, generator=gen)[0]
        self.grids = grids
        if save and self.run is not None:
            for name, images in grids.items():
                self.run.save_grid(name, images, self.step, keep_history=name != "data")
        return grids

    # -- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "batches": self.batches, "train_time": self.train_time,
                "noise": self.noise.get_state(), "mask_noise": self.mask_noise.get_state(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def save(self, run_dir: str | Path | None = None) -> RunDir:
        """Write weights and training state to the run folder (atomically)."""
        if run_dir is not None and self.run is None:
            self.run = RunDir.create(run_dir, {"kind": "misgan", **self.config.to_dict()})
        if self.run is None:
            raise ValueError("no run folder: pass run_dir")
        self.run.save_checkpoint(self._checkpoint_modules(), self.state())
        return self.run

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, data: IncompleteDataset | None = None) -> MisGAN:
        """Rebuild a run from its folder, ready to sample, impute or train on."""
        run = RunDir.open(path)
        raw = run.read_config()
        if raw.get("kind", "misgan") != "misgan":
            raise CheckpointError(f"{path} is a {raw.get('kind')!r} run, not a MisGAN run")
        try:
            config = MisGANConfig.from_dict(raw)
        except TypeError as err:
            raise CheckpointError(f"{run.path / 'config.json'} does not describe a MisGAN run: {err}") from err
        if device is not None:
            config.device = device
        gan = cls(config, data=data, run_dir=run, _resume=True)
        if raw.get("inference_only"):
            # A shipped model (misgan_core.demo): generators and imputer only, no training state.
            gan.step = run.load_weights_only(gan.nets.modules(), raw["inference_only"], map_location=gan.device)
            for name, avg in gan.averaged.items():  # a shipped model's weights are its averages already
                avg.load_state_dict(getattr(gan.nets, name).state_dict())
            gan.history = run.read_metrics()
            gan.batches = gan.step * config.n_critic  # for its budget: epochs and training time
            gan.train_time = float(next((r["time"] for r in reversed(gan.history)
                                         if isinstance(r.get("time"), (int, float))), 0.0))
            gan.run = None  # nothing may write into a shipped model's folder
            gan._set_mask_temperature()  # an annealed lambda where it was shipped
            return gan
        state = run.load_checkpoint(gan._checkpoint_modules(), map_location=gan.device)
        try:
            for k, opt in gan.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
            gan.step, gan.batches = int(state["step"]), int(state["batches"])
            gan.train_time = float(state.get("train_time", 0.0))
            gan.noise.set_state(state["noise"].cpu())
            gan.mask_noise.set_state(state["mask_noise"].cpu())
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{run.path} has weights but its training state does not fit the config "
                                  f"({err}); it was made by a different model config") from err
        # Log lines after the checkpoint describe work that was lost; a reader only skips them (a training
        # may still be writing), and training drops them from the file when it resumes (begin_training).
        gan.history = [r for r in run.read_metrics() if r.get("step", 0) <= gan.step]
        gan._reconcile_log = True
        gan._set_mask_temperature()  # an annealed lambda where the run stopped
        return gan
