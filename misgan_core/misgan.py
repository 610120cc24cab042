"""MisGAN (Li, Jiang and Marlin, ICLR 2019): learning from incomplete data with generative adversarial networks.

The data are pairs (x, m), an image and its mask (1 observed, 0 missing), of which only x's observed entries
are seen. A data generator Gx and a mask generator Gm are trained with one critic each, comparing masked
generated data with masked real data through f_tau(x, m) = x * m + tau * (1 - m) (eq. 3):
  L_m(Dm, Gm)     = E_(x,m)~p_D [Dm(m)] - E_eps [Dm(Gm(eps))]                                       (eq. 4)
  L_x(Dx, Gx, Gm) = E_(x,m)~p_D [Dx(f_tau(x, m))] - E_eps,z [Dx(f_tau(Gx(z), Gm(eps)))]            (eq. 5)
  min_Gx max_Dx L_x                                                                                 (eq. 6)
  min_Gm max_Dm L_m + alpha * L_x                                                                   (eq. 7)
With an imputer Gi(x, m, w) = x * m + Ĝi(x * m + w * (1 - m)) * (1 - m) (eq. 12) and its critic Di:
  L_i(Di, Gi, Gx) = E_z [Di(Gx(z))] - E_(x,m)~p_D,w [Di(Gi(x, m, w))]                          (section 4)
  min_Gi max_Di L_i;   min_Gx max_Dx L_x + beta * L_i;   Gm as eq. 7                                (eq. 9, 10)
A stand-alone imputer trains eq. 9 alone from a pre-trained Gx; eq. 11 targets masks p_m of the user's choice
with Gx's samples standing in for the data. Critics are WGAN-GP (Gulrajani et al. 2017): each batch updates
the critics, and every n_critic batches the generators take one step (appendix D adopts WGAN-GP's n_critic 5
and Adam at lr 1e-4, betas (0, 0.9); section 5: alpha 0.2, beta 0.1; config.RECIPES). `steps` counts
generator updates.

How Gm draws masks, and what that asks of Dx, is the mask model's (mask_models.py: the paper's independent
Gm(eps), and Gm(eps, x) for missingness that depends on the data). The step's speed paths are in fast.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import MisGANConfig
from .data import IncompleteDataset, as_float_images
from .device import pick_device
from .distributed import average_gradients, rank_and_world
from .errors import CheckpointError, OptionError
from .fast import RankNoise, SpeedPaths
from .imputers import check_incomplete_batch, paste_observed
from .mask_models import MASK_MODELS, MaskModel, SeededNoise, f_tau, with_mask_channel
from .misgan_runs import MisGANRunFolder
from .models import Critic, TemperatureSigmoid, check_shape, critic, generator, imputer_net
from .runs import RunDir
from .training import Cadence, EpochOrder, drive

__all__ = ["MisGAN", "MisGANConfig", "Networks", "build_networks", "f_tau"]


@dataclass
class Networks:
    """MisGAN's networks (appendix D); the imputer's pair only with an imputer."""

    gx: nn.Module
    gm: nn.Module
    dx: Critic
    dm: Critic
    gi: nn.Module | None = None
    di: Critic | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in vars(self).items() if v is not None}


def build_networks(c: MisGANConfig, shape: tuple[int, int, int],
                   data: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[Networks, MaskModel]:
    """Appendix D's networks for images of `shape` (C, H, W), wired for config `c`: Gx, the mask model's Gm,
    Dx (of the mask model's input), Dm, and with an imputer Ĝi and Di (of images, or of (image, mask) pairs)."""
    check_shape(c.arch, shape)
    mask_shape = (1, *shape[1:])
    output = TemperatureSigmoid(c.temperature, c.mask_activation)
    mask_model = MASK_MODELS[c.mask_model].build(lambda s, out: generator(c.arch, s, out, c.latent), shape,
                                                 output, c.latent, data, c.mask_critic)
    dx_shape = (shape[0] + mask_model.data_critic_extra_channels, *shape[1:])
    nets = Networks(gx=generator(c.arch, shape, nn.Sigmoid(), c.latent), gm=mask_model.net,
                    dx=critic(c.arch, dx_shape), dm=critic(c.arch, mask_shape))
    if c.imputer:
        nets.gi = imputer_net(shape, c.imputer_width, c.imputer_depth, c.imputer_sees_mask)
        nets.di = critic(c.arch, (shape[0] + 1, *shape[1:]) if c.imputer_critic_sees_mask else shape)
    return nets, mask_model


def _impute(gi: nn.Module, x: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Eq. 12: Gi(x, m, w) = x*m + Ĝi(x*m + w*(1-m), m) * (1-m), the observed entries kept bit-exact."""
    observed = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return paste_observed(observed, m, gi(observed + w * (1 - m), m))


class MisGAN(MisGANRunFolder):
    """A MisGAN run: networks, optimizers, data and the training loop.

    >>> gan = MisGAN(MisGANConfig(steps=300), run_dir="runs/demo")   # new run
    >>> gan.train()                                                    # config.steps generator updates
    >>> gan = MisGAN.load("runs/demo"); gan.train(300)                 # resume for 300 more
    >>> gan.sample(16); gan.impute(x, m, draws=8)
    """

    name = "misgan"

    def __init__(self, config: MisGANConfig, data: IncompleteDataset | None = None,
                 run_dir: str | Path | RunDir | None = None, _resume: bool = False,
                 speed: SpeedPaths | None = None):
        config.validate()
        self.config = c = config.resolved()
        self.speed = speed or SpeedPaths()
        if c.threads:
            torch.set_num_threads(c.threads)
        self.rank, self.world = rank_and_world()  # data-parallel under torchrun: see distributed.py
        self.device = pick_device(c.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.data = data if data is not None else c.data.load()
        self.shape = self.data.shape
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's RNG
            torch.manual_seed(c.seed)
            # A resumed run's self-masking mechanism comes from its checkpoint, not from the data.
            self.nets, self.mask_model = build_networks(c, self.shape, None if _resume else (self.data.x, self.data.m))
        for module in self.nets.modules().values():
            module.to(self.device)
            if c.arch == "conv" and self.speed.channels_last:
                module.to(memory_format=torch.channels_last)
        if c.imputer and c.imputer_mode != "joint":
            self._load_pretrained_gx(c.pretrained)
        # Weight averages (config.ema) of the networks that sample and impute; training updates the live ones.
        self.averaged = {name: copy.deepcopy(getattr(self.nets, name)).eval().requires_grad_(False)
                         for name in ("gx", "gm", "gi") if c.ema and getattr(self.nets, name) is not None}
        self.optimizers = {name: torch.optim.Adam(module.parameters(), lr=c.imputer_lr if name in ("gi", "di")
                                                  else c.lr, betas=tuple(c.betas), fused=True)
                           for name, module in self._trainable().items()}
        self.step = 0          # generator updates done
        self.batches = 0       # critic updates done
        self.train_time = 0.0  # seconds spent in train(), summed over sessions
        self.history: list[dict[str, Any]] = []
        self.grids: dict[str, torch.Tensor] = {}
        self._setup_data()
        self.noise = RankNoise(torch.Generator(device=self.device).manual_seed(c.seed), self.device, c.latent,
                               self.rank, self.world, self._b)
        self.mask_noise = torch.Generator().manual_seed(c.seed + 7919)  # eq. 11's target masks, on the CPU
        self._target_masks = c.data.mask_process() if c.imputer_mode == "target" else None
        self._live_fid = None
        self._reconcile_log = False  # set by load(): metrics.jsonl may hold lines past the checkpoint
        self._samples_ahead: list[tuple[torch.Tensor, ...]] = []
        self._batch_norm = any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for net in (self.nets.gx,
                               self.nets.gi) if net is not None for mod in net.modules())
        self.run = self._run_folder(run_dir, _resume)

    def _setup_data(self) -> None:
        c = self.config
        if self.data.compact:  # a uint8 store (CelebA): read a minibatch at a time, masked and made float
            self._x, self._m = self.data.x, self.data.m
        else:
            self._x, self._m = self.data.observed_only().to(self.device), self.data.m.to(self.device)
        self._order = EpochOrder(len(self._x), c.batch_size, c.seed, "cpu" if self.data.compact else self.device)
        if self._order.batch_size % self.world:
            raise OptionError(f"--batch-size is the global batch and must divide evenly over the {self.world} "
                              f"processes; got {self._order.batch_size}")
        self._b = self._order.batch_size // self.world  # this rank's rows of every minibatch

    def _run_folder(self, run_dir: str | Path | RunDir | None, resume: bool) -> RunDir | None:
        if self.rank != 0 or run_dir is None:
            return None  # rank 0 alone writes the run folder
        if isinstance(run_dir, RunDir):
            return run_dir
        return RunDir(run_dir) if resume else RunDir.create(run_dir, {"kind": "misgan", **self.config.to_dict()})

    def _load_pretrained_gx(self, path: str | None) -> None:
        source = MisGAN.load(path, device=str(self.device))  # type: ignore[arg-type]
        if source.shape != self.shape:
            raise OptionError(f"pre-trained run {path} models {source.shape} images, but the data are {self.shape}")
        if type(source.nets.gx) is not type(self.nets.gx):
            raise OptionError(f"pre-trained run {path} uses arch {source.config.arch!r}; use the same --arch")
        self.nets.gx.load_state_dict(source.nets.gx.state_dict())

    def _trainable(self) -> dict[str, nn.Module]:
        """The networks with optimizers: a stand-alone imputer trains Gi and Di alone, and without Dm (the
        AmbientGAN ablation) there is no Dm to train."""
        if self.config.imputer and self.config.imputer_mode != "joint":
            return {"gi": self.nets.gi, "di": self.nets.di}  # type: ignore[dict-item]
        return {k: v for k, v in self.nets.modules().items() if k != "dm" or self.config.mask_critic}

    # -- data --------------------------------------------------------------------------------

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
        m = self.noise.rows(lambda k: self._target_masks.sample(k, *self.shape[1:], self.mask_noise), n)
        m = m.to(self.device)
        return self.nets.gx(self.noise.z(n)) * m, m

    @property
    def _generative(self) -> bool:
        """Whether this run trains Gx, Gm and their critics (not a stand-alone imputer's)."""
        return not self.config.imputer or self.config.imputer_mode == "joint"

    @property
    def _imputing(self) -> bool:
        """Whether this step trains Gi and Di: with an imputer, from generator step `imputer_start` on."""
        return self.config.imputer and self.step >= self.config.imputer_start

    # -- one step: the critics on n_critic minibatches, then the generators ----------------------

    def train_step(self) -> dict[str, torch.Tensor]:
        """n_critic critic updates, one per minibatch, then one generator update (on the last minibatch)."""
        while True:
            x, m = self._batch()
            with self._precision():
                record = self._critic_update(x, m)
            self.batches += 1
            if self.batches % self.config.n_critic == 0:
                break
        with self._precision():
            record.update(self._generator_update(x, m))
        self._samples_ahead = []  # they came from the generators before this update
        self._update_averages()
        self.step += 1
        return record

    def _precision(self) -> torch.autocast:
        """One update's autocast region (bfloat16 products with config.precision 'bf16'). Each update has its
        own: autocast keeps its bfloat16 copy of a weight until the region ends, and every update ends with
        the optimizers changing the weights in place, which the next update must see."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _critic_update(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each critic ascends its L (eq. 4, 5, and section 4's L_i) with the gradient penalty; the critics share
        no parameters, so one backward serves all."""
        c, nets, b = self.config, self.nets, len(x)
        fake_x, fake_m, fake_m_dm, imputed = self._critic_samples(b)
        if self._imputing and c.imputer_mode == "target":
            with torch.no_grad():
                x, m = self._target_batch(b)
                imputed = self.impute_batch(x, m, train=True)
        terms: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]] = {}
        if self._generative:
            terms["x"] = (nets.dx, self.mask_model.data_critic_input(x, m, c.tau),
                          self.mask_model.data_critic_input(fake_x, fake_m, c.tau))  # eq. 5
            if c.mask_critic:
                terms["m"] = (nets.dm, m, fake_m_dm)  # eq. 4
        if self._imputing:
            # L_i (section 4): Gx samples play "real" against the imputed real data
            terms["i"] = (nets.di, self._imputer_critic_input(fake_x, m), self._imputer_critic_input(imputed, m))
        out, losses = {}, []
        for key, (net, real, fake) in terms.items():
            loss, w = self.speed.critic_loss(net, real, fake, self.noise.uniform(b, 1, 1, 1), c.gp_weight)
            losses.append(loss)
            out[f"loss_d{key}"], out[f"w_{key}"] = loss, w
        self._descend(sum(losses), [k for k in ("dx", "dm", "di") if k in self.optimizers])
        return out

    def _critic_samples(self, b: int) -> tuple[torch.Tensor, ...]:
        """This critic step's Gx samples, Gm's masks for Dx and for Dm, and the imputations of its real
        minibatch: the generators change only in generator steps, so the critic steps up to the next one can
        draw theirs in one pass (fast.SpeedPaths.lookahead_steps)."""
        if not self._samples_ahead:
            k = self.speed.lookahead_steps(self.config.n_critic, self.batches, self._batch_norm)
            with torch.no_grad():
                xs = self.nets.gx(self.noise.z(k * b))
                ms = ms_dm = imputed = None
                if self._generative:
                    ms = self.mask_model.draw(xs, self.noise)
                    ms_dm = self.mask_model.draw(xs, self.noise, for_mask_critic=True) \
                        if self.mask_model.mask_critic_output is not None else ms
                if self._imputing and self.config.imputer_mode != "target":
                    idx = torch.cat([self._batch_indices(self.batches + j) for j in range(k)])
                    imputed = self.impute_batch(*self._examples(idx), train=True)
            self._samples_ahead = list(zip(*[t.split(b) if t is not None else (None,) * k
                                             for t in (xs, ms, ms_dm, imputed)], strict=True))
        return self._samples_ahead.pop(0)

    def _generator_update(self, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gx descends L_x (+ beta * L_i, eq. 10), Gm descends L_m + alpha * L_x (eq. 7), Gi descends L_i
        (eq. 9): one backward pass of their sum, the mask model routing alpha (mask_models.generator_draws)."""
        c, nets, b = self.config, self.nets, len(x)
        out: dict[str, torch.Tensor] = {}
        critics = [net for net in (nets.dx, nets.dm, nets.di) if net is not None]
        for net in critics:
            net.requires_grad_(False)  # the generators' step needs no critic weight gradients
        total = torch.zeros((), device=self.device)
        if self._generative:
            fake_x = nets.gx(self.noise.z(b))
            m_x, m_m = self.mask_model.generator_draws(fake_x, self.noise, c.alpha)
            out["loss_gx"] = -nets.dx(self.mask_model.data_critic_input(fake_x, m_x, c.tau)).mean()
            total = total + out["loss_gx"]
            if c.mask_critic:
                out["loss_gm"] = -nets.dm(m_m).mean()
                total = total + out["loss_gm"]
        if self._imputing:
            if c.imputer_mode == "target":
                with torch.no_grad():
                    x, m = self._target_batch(b)
            imputed = self.impute_batch(x, m, train=True)
            if self._generative and c.beta:
                # Gx's share of L_i (eq. 10), beta * E[Di(Gx(z))]; one Di pass serves both terms.
                scores = nets.di(self._imputer_critic_input(torch.cat([imputed, fake_x]), torch.cat([m, m])))
                out["loss_gi"] = -scores[:b].mean()
                total = total + out["loss_gi"] + c.beta * scores[b:].mean()
            else:
                out["loss_gi"] = -nets.di(self._imputer_critic_input(imputed, m)).mean()
                total = total + out["loss_gi"]
        self._descend(total, [k for k in ("gx", "gm", "gi") if k in self.optimizers])
        for net in critics:
            net.requires_grad_(True)
        return out

    def _descend(self, loss: torch.Tensor, names: list[str]) -> None:
        """One Adam step of the optimizers `names` on `loss` (gradients averaged over torchrun's processes)."""
        for k in names:
            self.optimizers[k].zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            average_gradients([self.nets.modules()[k] for k in names])
        self._step(names)

    def _step(self, names: list[str]) -> None:
        """The optimizers' Adam steps (fused: one kernel per parameter)."""
        for k in names:
            self.optimizers[k].step()

    def _imputer_critic_input(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """What Di sees of an image x imputed under mask m (or of a Gx sample paired with m): x alone (eq. 12),
        or with `imputer_critic_sees_mask` the pair (x, m), a conditional critic: Gx(z) paired with the real
        batch's mask (a fair draw of p(m) under MCAR) asks eq. 12's match of every mask separately."""
        return with_mask_channel(x, m) if self.config.imputer_critic_sees_mask else x

    def impute_batch(self, x: torch.Tensor, m: torch.Tensor, train: bool = False,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Gi(x, m, w) = x*m + Ĝi(x*m + w*(1-m)) * (1-m) (eq. 12) with the live Ĝi, w ~ U[0, 1) of x's shape."""
        if self.nets.gi is None:
            raise CheckpointError("this run has no imputer; train one with --imputer")
        w = self.noise.uniform(len(x), *x.shape[1:]) if train else \
            torch.rand(x.shape, generator=generator, device=x.device)
        return _impute(self.nets.gi, x, m, w)

    @torch.no_grad()
    def _update_averages(self) -> None:
        """avg <- d avg + (1 - d) live after each generator update, d = min(ema, (1 + t) / (10 + t)) after t
        updates (a warm-up, so the first average is not the initial weights; Gi counts from imputer_start).
        Averaging a GAN generator's iterates damps its oscillation (Yazici et al., ICLR 2019)."""
        for name, avg in self.averaged.items():
            if name == "gi" and not self._imputing:
                continue
            t = self.step - (self.config.imputer_start if name == "gi" else 0)
            decay = min(self.config.ema, (1 + t) / (10 + t))
            live = getattr(self.nets, name)
            torch._foreach_lerp_(list(avg.parameters()), list(live.parameters()), 1 - decay)
            for mine, theirs in zip(avg.buffers(), live.buffers(), strict=True):
                mine.copy_(theirs)  # batch-norm statistics: the live network's

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

    def inference_net(self, name: str) -> nn.Module:
        """The network that samples or imputes: its weight average when config.ema, else the live one."""
        return self.averaged[name] if name in self.averaged else getattr(self.nets, name)

    # -- outputs ------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n complete images from Gx, on the CPU."""
        return self._generate(self.inference_net("gx"), n, generator)

    @torch.no_grad()
    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n masks from Gm (values in [0, 1]), of fresh Gx samples where the mask model sees the image."""
        return self.sample_with_masks(n, generator)[1]

    @torch.no_grad()
    def sample_with_masks(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (x, m) from the model: complete Gx samples and the masks Gm gives them (for the independent
        mask model the two are independent draws); the masks are the ones the mask critic judges."""
        gen = generator or torch.Generator().manual_seed(0)
        x = self.sample(n, gen)
        gm = self.inference_net("gm")
        was = gm.training
        gm.eval()
        m = self.mask_model.draw(x.to(self.device), SeededNoise(gen, self.device, self.config.latent), net=gm,
                                 for_mask_critic=True)
        gm.train(was)
        return x, m.float().cpu()

    def _generate(self, net: nn.Module, n: int, generator: torch.Generator | None) -> torch.Tensor:
        was = net.training
        net.eval()
        gen = generator or torch.Generator().manual_seed(0)
        out = net(SeededNoise(gen, self.device, self.config.latent).z(n)).float().cpu()
        net.train(was)
        return out

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """K imputations of each (x, m): (draws, N, C, H, W), observed entries kept bit-exact."""
        check_incomplete_batch(x, m)
        if tuple(x.shape[1:]) != self.shape:
            raise OptionError(f"this model imputes {self.shape} images; got {tuple(x.shape[1:])}")
        if draws < 1:
            raise OptionError(f"draws must be at least 1; got {draws}")
        if self.nets.gi is None:
            raise CheckpointError("this run has no imputer; train one with --imputer")
        gi = self.inference_net("gi")
        was = gi.training
        gi.eval()
        gen = generator or torch.Generator().manual_seed(0)
        xs = x.unsqueeze(0).expand(draws, *x.shape).reshape(-1, *x.shape[1:])
        ms = m.unsqueeze(0).expand(draws, *m.shape).reshape(-1, *m.shape[1:])
        w = torch.rand(xs.shape, generator=gen)
        chunks = [_impute(gi, *(t[i:i + 1024].to(self.device) for t in (xs, ms, w))).float().cpu()
                  for i in range(0, len(xs), 1024)]  # bounded memory for large datasets
        gi.train(was)
        return torch.cat(chunks).view(draws, *x.shape)
