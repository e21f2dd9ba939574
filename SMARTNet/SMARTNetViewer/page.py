"""The page of one browser session: the case list, the chosen case in Slicer's slice and 3D views, its table.

    python -m SMARTNetViewer.page OUTPUT_DIR --port P [--host 127.0.0.1] [--timeout S]

Started by :mod:`SMARTNetViewer.launcher`, one process per browser session (one scene each). The views are
rendered on the server (headless VTK on EGL/Mesa) and streamed as images by trame-slicer.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from SMARTNetSlicerLib import offscreen_views

offscreen_views.prefer_egl()  # before VTK makes its first window

from trame.app import get_server  # noqa: E402
from trame.ui.vuetify3 import SinglePageWithDrawerLayout  # noqa: E402
from trame.widgets import html  # noqa: E402
from trame.widgets import vuetify3 as v3  # noqa: E402
from trame_slicer import module as trame_slicer_module  # noqa: E402
from trame_slicer.core import LayoutManager, SlicerApp  # noqa: E402
from trame_slicer.rca_view import register_rca_factories  # noqa: E402

from SMARTNetLib.client import analysis_results  # noqa: E402
from SMARTNetLib.contracts.errors import SmartNetError  # noqa: E402
from SMARTNetSlicerLib.scene_context import CPU_RAY_CAST, ModuleLogics  # noqa: E402
from SMARTNetViewer.case_scene import CaseScene  # noqa: E402
from SMARTNetViewer.cases import Case, find_cases  # noqa: E402

LAYOUT = "Quad View"  # coronal and sagittal | 3D and axial
CASE_HEADERS = [
    {"title": "Case", "key": "name", "sortable": True},
    {"title": "ICH p", "key": "ich_probability", "sortable": True, "align": "end"},
    {"title": "mL", "key": "total_volume_ml", "sortable": True, "align": "end"},
    {"title": "Warn.", "key": "warnings", "sortable": True, "align": "end"},
]


def module_logics(app: SlicerApp) -> ModuleLogics:
    """The SMARTNet logics' view of trame-slicer's application (the same scene and module logics)."""
    return ModuleLogics(scene=app.scene, volumes=app.volumes_logic, segmentations=app.segmentations_logic,
                        volumeRendering=app.app_logic.GetModuleLogic("VolumeRendering"),
                        volumeRenderingMethod=CPU_RAY_CAST,  # GPU ray casting does not finish on headless Mesa
                        application=app.app_logic)


class ResultsPage:
    """One session's scene, views and page state."""

    def __init__(self, server, output_dir: Path, cases: list[Case]) -> None:
        self.server, self.output_dir, self.cases = server, output_dir, cases
        server.enable_module(trame_slicer_module)
        self.app = SlicerApp()
        register_rca_factories(self.app.view_manager, server)
        self.layout_manager = LayoutManager(self.app.scene, self.app.view_manager, server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout(LAYOUT)
        self.scene = CaseScene(module_logics(self.app))
        state = server.state
        state.trame__title = "SMART-Net results"
        state.cases = [c.row(i) for i, c in enumerate(cases)]
        state.case_headers = CASE_HEADERS
        state.selected = []
        state.case_name = ""
        state.case_error = ""
        state.case_warnings = []
        state.table_header = list(analysis_results.TABLE_HEADER)
        state.table_rows = []
        state.jump_targets = []
        state.show_segmentation = True
        state.show_activation = True
        state.show_activation_3d = False
        state.activation_opacity = 0.5
        state.change("selected")(self.on_selected)
        state.change("show_segmentation", "show_activation", "show_activation_3d",
                     "activation_opacity")(self.on_display)
        self.build_ui()
        first = next((i for i, c in enumerate(cases) if c.report is not None), None)
        if first is not None:
            state.selected = [first]

    # -- state -----------------------------------------------------------------------------------
    def on_selected(self, selected, **_) -> None:
        state = self.server.state
        if not selected:
            return
        case = self.cases[int(selected[0])]
        state.case_name, state.case_error = case.name, ""
        try:
            nodes = self.scene.load(case)
        except Exception as err:  # shown on the page: a bad case must not take the session down
            logging.exception("smartnet view: %s", case.folder)
            message = str(err) if isinstance(err, SmartNetError) else f"{case.folder}: {type(err).__name__}: {err}"
            self.scene.clear()
            state.case_error, state.case_warnings, state.table_rows, state.jump_targets = message, [], [], []
            self.render()
            return
        state.case_warnings = case.warnings
        _, rows = analysis_results.findings_table(nodes.report)
        state.table_rows = [list(r) for r in rows]
        found = self.scene.findings()  # largest first
        state.jump_targets = [{"name": f.name, "label": f"{f.display_name}: {f.volume_ml:.1f} mL"} for f in found]
        self.on_display()
        self.reset_views()
        if found:
            self.scene.jump_to(found[0].name)
        self.render()

    def on_display(self, **_) -> None:
        state = self.server.state
        self.scene.show(bool(state.show_segmentation), bool(state.show_activation), bool(state.show_activation_3d),
                        float(state.activation_opacity))
        self.render()

    def jump(self, class_name: str) -> None:
        self.scene.jump_to(class_name)
        self.render()

    def reset_views(self) -> None:
        for view in self.app.view_manager.get_slice_views():
            view.fit_view_to_content()
        for view in self.app.view_manager.get_threed_views():
            view.render()  # the displayable managers make the new actors on a render: frame them, not the old ones
            view.reset_view()

    def render(self) -> None:
        for view in self.app.view_manager.get_views():
            view.schedule_render()

    # -- page ------------------------------------------------------------------------------------
    def build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, theme="dark", width=520) as layout:
            layout.title.set_text(f"SMART-Net results: {self.output_dir}")
            with layout.drawer:
                with html.Div(classes="pa-2", id="case-panel"):
                    v3.VDataTable(
                        id="case-list", headers=("case_headers",), items=("cases",), item_value="index",
                        v_model=("selected",), show_select=True, select_strategy="single", density="compact",
                        items_per_page=-1, hide_default_footer=True, hover=True,
                    )
                    html.H3("{{ case_name }}", id="case-name", classes="mt-3")
                    v3.VAlert("{{ case_error }}", v_if=("case_error",), type="error", density="compact",
                              id="case-error")
                    with html.Div(id="case-warnings"):
                        v3.VAlert("{{ w }}", v_for="w in case_warnings", type="warning", density="compact",
                                  classes="my-1 case-warning")
                    v3.VSwitch(label="Segmentation", v_model=("show_segmentation",), id="toggle-segmentation",
                               density="compact", hide_details=True, color="primary")
                    v3.VSwitch(label="Activation map (slices)", v_model=("show_activation",),
                               id="toggle-activation", density="compact", hide_details=True, color="primary")
                    v3.VSwitch(label="Activation map (3D)", v_model=("show_activation_3d",),
                               id="toggle-activation-3d", density="compact", hide_details=True, color="primary")
                    v3.VSlider(label="Activation opacity", v_model=("activation_opacity",), min=0, max=1,
                               step=0.05, density="compact", hide_details=True, id="activation-opacity")
                    with html.Div(id="jump-buttons", classes="mt-2"):
                        v3.VBtn("Jump to largest {{ t.label }}", v_for="t in jump_targets", size="small",
                                classes="ma-1 jump-button", click=(self.jump, "[t.name]"))
                    with html.Table(id="findings", classes="mt-2", style="width: 100%; font-size: 0.85em"):
                        with html.Tr():
                            html.Th("{{ h }}", v_for="h in table_header", style="text-align: left")
                        with html.Tr(v_for="row in table_rows", classes="finding-row"):
                            html.Td("{{ cell }}", v_for="cell in row")
            with layout.content:
                with html.Div(style="height: 100%; display: flex; flex-direction: column", id="views"):
                    self.layout_manager.initialize_layout_grid(layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one browser session of smartnet view")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=int, default=30,
                        help="seconds without a connected browser before this session's process exits")
    args = parser.parse_args(argv)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        cases = find_cases(args.output_dir)
    except SmartNetError as err:
        print(f"smartnet view: {err}", file=sys.stderr)
        return 2
    server = get_server(client_type="vue3")
    ResultsPage(server, args.output_dir.resolve(), cases)
    server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False,
                 timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
