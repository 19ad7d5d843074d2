// Gradio 6.17's plots declare Vega-Lite v5.17 in every spec while its bundle runs Vega-Lite v6, so each
// plot logs "The input spec uses Vega-Lite v5..., but the current version ... is v6...": a Gradio bug
// with no effect on the drawing. Drop exactly that line; every other console message stays.
(() => {
  const warn = console.warn.bind(console);
  const stale = /The input spec uses Vega-Lite v5[\d.]*, but the current version of Vega-Lite is v6/;
  console.warn = (...args) => {
    if (args.some((a) => typeof a === "string" && stale.test(a))) return;
    warn(...args);
  };
})();
