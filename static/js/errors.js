// A failed htmx request (server error, network down) must not fail silently.
document.addEventListener("htmx:responseError", (e) => {
  const box = document.getElementById("request-error");
  box.textContent = `The server could not handle that request (HTTP ${e.detail.xhr.status}). Nothing was saved; please try again.`;
  box.hidden = false;
});
document.addEventListener("htmx:sendError", () => {
  const box = document.getElementById("request-error");
  box.textContent = "RegQA could not be reached. Check the connection and try again.";
  box.hidden = false;
});
