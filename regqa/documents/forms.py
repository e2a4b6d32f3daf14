from django import forms


class UploadForm(forms.Form):
    file = forms.FileField(label="PDF file", widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,.pdf"}))
    title = forms.CharField(max_length=300, required=False, help_text="Defaults to the file name.")
