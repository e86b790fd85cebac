// The print button of printable reports (a file, not inline script: the pages' CSP allows no inline code).
document.querySelectorAll("[data-print]").forEach((button) => button.addEventListener("click", () => window.print()));
