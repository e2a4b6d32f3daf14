from __future__ import annotations

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from regqa.documents.models import Chunk, Document
from regqa.qa.models import Answer

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get(name=extracted))
        self.save()


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Document

    title = factory.Sequence(lambda n: f"Rulebook {n}")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    status = Document.Status.READY


class ChunkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chunk

    document = factory.SubFactory(DocumentFactory)
    ordinal = factory.Sequence(int)
    text = "A passage of regulatory text."
    page_start = 1
    page_end = 1
    embedding = factory.LazyFunction(lambda: np.zeros(384, dtype="float32").tobytes())


class AnswerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Answer

    user = factory.SubFactory(UserFactory)
    question = factory.Sequence(lambda n: f"Question number {n}?")
    status = Answer.Status.ANSWERED
    answer_text = "An answer [1]."
    retrieval_ms = 12.0
