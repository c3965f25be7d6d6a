"""The notebooks open in JupyterLab and the explorer's widget is live there (headless Chromium).

What the other tests cannot see: the JupyterLab front-end, the ipywidgets lab extension (a version
mismatch with the kernel's ipywidgets shows "Loading widget…", an error, or the plain-text repr), and the
round trip slider → kernel → new face image and similarity. Each test opens a notebook through the lab
URL, runs all cells from the Run menu, and checks what the browser shows; screenshots go to runs/browser/.
"""
from __future__ import annotations

import re
import time

import pytest

from browser_helpers import OUT, browser_missing, browser_required

if browser_missing() and not browser_required():
    pytest.skip(f"browser test skipped: {browser_missing()}", allow_module_level=True)
try:
    from playwright.sync_api import expect
except ImportError:  # in CI: the ``chromium`` fixture fails with the reason
    expect = None

INITIAL_SCALE = 8.0  # 05's default: the widget opens there
SCALE_TARGET = 4.0   # where the test moves the slider
FALLBACK_TEXTS = ("Loading widget", "Error displaying widget", "Failed to load model class")

#: the notebook's state, polled in the page: "error" as soon as a traceback shows (JupyterLab renders error
#: outputs as stderr), "done" once every code cell has an execution count and the kernel is idle again
RUN_STATE_JS = r"""() => {
  const nb = document.querySelector('.jp-NotebookPanel .jp-Notebook');
  if (!nb) return false;
  const stderr = [...nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')];
  if (stderr.some(o => o.textContent.includes('Traceback (most recent call last)'))) return 'error';
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent.trim());
  const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
  const idle = indicator && indicator.getAttribute('data-status') === 'idle';
  return prompts.length > 0 && prompts.every(p => /^\[\d+\]:$/.test(p)) && idle ? 'done' : false;
}"""


def open_and_run_all(page, lab, relpath: str, budget, run_timeout_s: float) -> None:
    """Open ``relpath`` in JupyterLab, wait for its kernel, Run ▸ Run All Cells, wait until all ran."""
    page.goto(lab.lab_url(relpath), timeout=budget.ms(60))
    # the toolbar says "idle" before the kernel is even connected: ask the server, then the page
    t_end = time.monotonic() + budget.ms(60) / 1000
    while not lab.kernel_connected(relpath):
        assert time.monotonic() < t_end, f"no kernel connected to {relpath}"
        time.sleep(0.25)
    page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=budget.ms(30))
    page.locator(".lm-MenuBar-item", has=page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$"))).click(
        timeout=budget.ms(20))
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click(timeout=budget.ms(20))
    try:
        state = page.wait_for_function(RUN_STATE_JS, timeout=budget.ms(run_timeout_s), polling=250).json_value()
    except Exception:
        state = "timeout; prompts: " + " ".join(page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts())
        state += "; kernel: " + str(page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status"))
    if state != "done":
        page.screenshot(path=str(OUT / f"{relpath.rsplit('/', 1)[-1]}.failed.png"))
    assert state == "done", f"{state}: " + "\n".join(
        page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts())[-3000:]


def assert_no_fallback(page) -> None:
    """No widget placeholder or error, and no widget shown as its plain-text repr (``VBox(children=…``)."""
    texts = "\n".join(page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts())
    for fallback in FALLBACK_TEXTS:
        assert fallback not in texts, f"the notebook shows {fallback!r}: the widget front-end did not load"
    reprs = page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='text/plain']").all_inner_texts()
    assert not [r for r in reprs if re.match(r"\s*[HV]Box\(", r)], "a widget is shown as plain text"


def similarities(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"-?\d+\.\d{3}\b", text))


def test_degradation_explorer_widget_is_live(page, lab, notebooks, budget):
    open_and_run_all(page, lab, notebooks["05_degradation_explorer"], budget, run_timeout_s=90)

    # the explorer is a widget view (the ipywidgets front-end rendered it), not a text repr or a placeholder
    scale_label = page.locator(".widget-label", has_text=re.compile(r"^\s*scale"))
    widget_view = page.locator(".jp-OutputArea-output > .widget-vbox", has=scale_label)
    widget_cell = page.locator(".jp-CodeCell", has=widget_view)
    explorer = widget_cell.locator(widget_view)
    try:
        explorer.wait_for(timeout=budget.ms(30))
    except Exception:
        page.screenshot(path=str(OUT / "05_notebook.failed.png"))
        shown = "\n".join(page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts())
        raise AssertionError("no explorer widget view rendered (ipywidgets front-end missing or mismatched?); "
                             f"the notebook's outputs end with:\n{shown[-600:]}") from None
    assert explorer.count() == 1
    assert widget_cell.locator(".jp-Cell-outputArea > .jp-OutputArea-child").count() == 1
    assert widget_cell.locator(".jp-Cell-outputArea [data-mime-type='text/plain']").count() == 0, \
        "the widget cell shows a plain-text repr next to the widget"
    assert_no_fallback(page)

    slider = explorer.locator(".widget-hslider", has=scale_label)
    handle = slider.get_by_role("slider")
    readout = explorer.locator(".widget-html")  # the similarity read-out: the explorer's one HTML widget
    image = explorer.locator(".widget-output img")

    def value() -> float:  # the slider's own read-out: the exact value (aria-valuenow is rounded)
        return float(slider.locator(".widget-readout").inner_text())

    assert readout.count() == 1
    image.wait_for(timeout=budget.ms(30))
    expect(image).to_have_js_property("complete", True, timeout=budget.ms(10))
    before_src, before_text = image.get_attribute("src"), readout.inner_text()
    before_scale = value()
    assert before_src.startswith("data:image/png"), before_src[:40]
    assert before_scale == INITIAL_SCALE, f"the slider opens at ×{before_scale:g}, not at INITIAL_SCALE"
    assert similarities(before_text), f"no similarity in the read-out: {before_text!r}"
    widget_cell.screenshot(path=str(OUT / f"05_explorer_x{before_scale:g}.png"))

    # move the scale slider to ×4: drag the handle along the track, then fine-tune with the arrow keys
    lo, hi = float(handle.get_attribute("aria-valuemin")), float(handle.get_attribute("aria-valuemax"))
    handle.scroll_into_view_if_needed(timeout=budget.ms(10))
    track, knob = slider.locator(".noUi-target").bounding_box(), handle.bounding_box()
    x = track["x"] + track["width"] * (SCALE_TARGET - lo) / (hi - lo)
    page.mouse.move(knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2)
    page.mouse.down()
    page.mouse.move(x, knob["y"] + knob["height"] / 2, steps=12)
    page.mouse.up()
    dragged_to = value()
    for _ in range(12):
        if value() == SCALE_TARGET:
            break
        handle.press("ArrowRight" if value() < SCALE_TARGET else "ArrowLeft")
    assert value() == SCALE_TARGET, f"the slider is at {value()} (dragged to {dragged_to})"

    # the kernel re-rendered: the read-out names ×4 and its similarities changed, the face image changed
    try:
        # (locators, not element handles: the output widget replaces its <img> on every render)
        expect(readout).to_have_text(re.compile(rf"^\s*×{SCALE_TARGET:g} "), timeout=budget.ms(60))
        expect(image).not_to_have_attribute("src", before_src, timeout=budget.ms(60))
        expect(image).to_have_js_property("complete", True, timeout=budget.ms(10))
    except Exception:
        page.screenshot(path=str(OUT / "05_notebook.failed.png"))
        raise AssertionError(f"no render at ×{SCALE_TARGET:g} (slider dragged to {dragged_to}, now {value()}); "
                             f"read-out: {readout.inner_text()!r}") from None
    after_text = readout.inner_text()
    assert similarities(after_text) and similarities(after_text) != similarities(before_text), \
        f"the similarity read-out did not change: {before_text!r} → {after_text!r}"
    assert image.get_attribute("src").startswith("data:image/png")
    assert image.evaluate("img => img.naturalWidth") > 0
    assert_no_fallback(page)
    widget_cell.screenshot(path=str(OUT / f"05_explorer_x{SCALE_TARGET:g}.png"))
    page.screenshot(path=str(OUT / "05_notebook.png"))
    widget_errors = [e for e in page.console_errors if "widget" in e.lower()]
    assert not widget_errors, f"widget errors in the browser console: {widget_errors}"


def test_attention_maps_figures_render(page, lab, notebooks, budget):
    open_and_run_all(page, lab, notebooks["04_attention_maps"], budget, run_timeout_s=120)
    figures = page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='image/png'] img")
    # per-student attention figure(s), the per-block similarity curve and the Grad-CAM mosaic
    assert figures.count() >= 3, f"expected at least 3 figures, found {figures.count()}"
    for i in range(figures.count()):
        fig = figures.nth(i)
        assert fig.evaluate("img => img.complete && img.naturalWidth > 0"), f"figure {i} did not load"
        fig.screenshot(path=str(OUT / f"04_figure_{i}.png"))
    assert_no_fallback(page)
    stderr = "\n".join(page.locator(".jp-Notebook [data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts())
    assert "Traceback" not in stderr, stderr[-2000:]
    page.screenshot(path=str(OUT / "04_notebook.png"))
