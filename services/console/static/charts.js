// Draw every element with data-chart: its JSON is an ECharts option. The same numbers are in a table beside it.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var chart = echarts.init(el, null, { locale: document.documentElement.lang === "en" ? "EN" : "ZH", renderer: "svg" });
    var option = JSON.parse(el.dataset.chart);
    option.aria = { enabled: true, decal: { show: true } };
    option.animation = false;
    chart.setOption(option);
    window.addEventListener("resize", function () { chart.resize(); });
  });
});
