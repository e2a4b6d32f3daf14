// Drag and drop onto the upload form: dropped files go into the file input, and the chosen
// files are listed, so the form submits them like picked ones.
(function () {
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("id_files");
  const list = document.getElementById("chosen-files");
  if (!zone || !input) return;
  function show() {
    list.replaceChildren(...Array.from(input.files).map((f) => {
      const li = document.createElement("li");
      li.textContent = `${f.name} (${(f.size / 1e6).toFixed(1)} MB)`;
      return li;
    }));
  }
  ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const pdfs = new DataTransfer();
    Array.from(ev.dataTransfer.files).forEach((f) => pdfs.items.add(f));
    input.files = pdfs.files;
    show();
  });
  input.addEventListener("change", show);
})();
